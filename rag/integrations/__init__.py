"""Adapters to other frameworks, kept out of the core so `import rag` never imports them.

`rag.integrations.langchain.PaperRetriever` is a LangChain `BaseRetriever` over a `rag.Bot` or `Retriever`.
"""
