// Behaviour the chat needs beyond what Gradio's sanitised Markdown allows (no inline handlers survive it):
// - a citation marker [n] scrolls the sources panel to that paper and highlights it (instead of a new tab);
// - "Copy" under an answer copies its plain text plus the references of the papers it cites.
(() => {
  const flash = (entry) => {
    for (let node = entry.parentElement; node; node = node.parentElement) {
      if (node.tagName === "DETAILS") node.open = true;
    }
    entry.scrollIntoView({ behavior: "smooth", block: "center" });
    entry.classList.remove("flash");
    void entry.offsetWidth;
    entry.classList.add("flash");
  };

  const writeClipboard = async (text) => {
    try {
      await navigator.clipboard.writeText(text);
    } catch (_) {
      const area = document.createElement("textarea");
      area.value = text;
      document.body.appendChild(area);
      area.select();
      document.execCommand("copy");
      area.remove();
    }
  };

  const answerText = (link) => {
    const message = link.closest(".message-content") || link.parentElement.parentElement;
    const copy = message.cloneNode(true);
    copy.querySelectorAll(".answer-meta, .declined").forEach((node) => node.remove());
    let text = copy.innerText.trim();
    const turn = (link.getAttribute("href") || "").replace("#copy-", "");
    const cited = [...new Set([...message.querySelectorAll("a.cite")].map((a) => a.textContent))];
    const references = cited
      .map((marker) => {
        const number = marker.replace(/[^0-9]/g, "");
        const entry = document.getElementById(`src-${turn}-${number}`);
        const title = entry && entry.querySelector(".source-title");
        const authors = entry && entry.querySelector(".source-authors");
        if (!title) return null;
        return `${marker} ${title.textContent}${authors ? ". " + authors.textContent : ""}`;
      })
      .filter(Boolean);
    if (references.length) text += "\n\nReferences\n" + references.join("\n");
    return text;
  };

  document.addEventListener(
    "click",
    (event) => {
      const link = event.target.closest && event.target.closest("a.cite, a.copy-answer");
      if (!link) return;
      event.preventDefault();
      event.stopPropagation();
      if (link.classList.contains("copy-answer")) {
        writeClipboard(answerText(link)).then(() => {
          link.textContent = "Copied";
          setTimeout(() => (link.textContent = "Copy"), 1500);
        });
        return;
      }
      const entry = document.getElementById((link.getAttribute("href") || "").replace(/^#/, ""));
      if (entry) flash(entry);
    },
    true
  );
})();
