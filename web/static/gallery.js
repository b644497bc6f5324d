// gazou gallery: small progressive enhancements; every page works without them.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  // Copy buttons: shown only where the clipboard can be written.
  for (const button of document.querySelectorAll("button.copy[data-copy]")) {
    if (!navigator.clipboard) continue;
    button.hidden = false;
    button.addEventListener("click", async () => {
      const field = document.getElementById(button.dataset.copy);
      try {
        await navigator.clipboard.writeText(field.value);
        button.textContent = "Copied";
      } catch {
        field.select();
        button.textContent = "Press Ctrl+C";
      }
      setTimeout(() => { button.textContent = "Copy"; }, 2000);
    });
  }
  // Drag and drop onto the upload form's file field.
  const drop = document.getElementById("drop");
  if (drop) {
    const input = drop.querySelector("input[type=file]");
    for (const kind of ["dragenter", "dragover"]) {
      drop.addEventListener(kind, (event) => { event.preventDefault(); drop.classList.add("over"); });
    }
    drop.addEventListener("dragleave", () => drop.classList.remove("over"));
    drop.addEventListener("drop", (event) => {
      event.preventDefault();
      drop.classList.remove("over");
      if (event.dataTransfer && event.dataTransfer.files.length) input.files = event.dataTransfer.files;
    });
  }
  // Upload with a progress bar per file: one request per file, one after another, each
  // answered with its result row; without this script the form sends them all at once.
  const form = document.querySelector("form.upload");
  const list = document.getElementById("upload-progress");
  if (form && list && window.FormData && window.XMLHttpRequest) {
    form.addEventListener("submit", async (event) => {
      const files = Array.from(form.querySelector("input[type=file]").files);
      if (!files.length) return; // the browser says a file is required
      event.preventDefault();
      const button = form.querySelector("button[type=submit]");
      button.disabled = true;
      list.hidden = false;
      document.getElementById("upload-done").hidden = true;
      const rows = files.map((file) => {
        const item = document.createElement("li");
        const name = document.createElement("strong");
        const bar = document.createElement("progress");
        const status = document.createElement("span");
        name.textContent = file.name;
        bar.max = 100;
        bar.value = 0;
        bar.setAttribute("aria-label", "Upload of " + file.name);
        status.className = "outcome muted";
        status.textContent = "waiting";
        item.className = "upload-row";
        item.append(name, " ", bar, " ", status);
        list.append(item);
        return { file, item, bar, status };
      });
      for (const row of rows) await send(row);
      form.reset();
      button.disabled = false;
      document.getElementById("upload-done").hidden = false;
    });
  }
  function send(row) {
    return new Promise((resolve) => {
      const data = new FormData(form);
      data.delete("files");
      data.append("files", row.file, row.file.name);
      const xhr = new XMLHttpRequest();
      xhr.open("POST", form.action);
      xhr.setRequestHeader("HX-Request", "true");
      xhr.upload.addEventListener("progress", (event) => {
        if (!event.lengthComputable) return;
        row.bar.value = Math.round((event.loaded / event.total) * 100);
        row.status.textContent = row.bar.value + "%";
      });
      xhr.addEventListener("load", () => {
        row.bar.value = 100;
        const answer = document.createElement("template");
        answer.innerHTML = xhr.responseText;
        const outcome = answer.content.querySelector("li.upload-result .outcome");
        const heading = answer.content.querySelector("h1"); // an error page
        if (outcome) row.status.replaceWith(outcome);
        else row.status.textContent = "failed: " + (heading ? heading.textContent : "error " + xhr.status);
        row.item.classList.add(xhr.status < 300 ? "done" : "failed");
        resolve();
      });
      xhr.addEventListener("error", () => {
        row.status.textContent = "failed: the connection was lost";
        row.item.classList.add("failed");
        resolve();
      });
      row.status.textContent = "0%";
      xhr.send(data);
    });
  }
});
