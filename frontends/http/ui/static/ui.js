// Progressive enhancement of the wizard; every page works without this file.
// - a search box with data-filter="<list selector>" filters the list's items as you type;
// - a button with data-copy="<selector>" copies that element's text and is shown only here;
// - a link with data-progress="<events url>" shows the build's server-sent progress when
//   clicked, then downloads; without this script the plain link downloads.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  for (const box of document.querySelectorAll("input[data-filter]")) {
    const list = document.querySelector(box.dataset.filter);
    if (!list) continue;
    const apply = () => {
      const needle = box.value.trim().toLowerCase();
      for (const item of list.querySelectorAll("li[data-text]")) {
        item.hidden = needle !== "" && !item.dataset.text.includes(needle);
      }
    };
    box.addEventListener("input", apply);
    box.form.addEventListener("submit", (event) => { event.preventDefault(); apply(); });
  }
  for (const button of document.querySelectorAll("button[data-copy]")) {
    const source = document.querySelector(button.dataset.copy);
    if (!source || !navigator.clipboard) continue;
    button.hidden = false;
    button.addEventListener("click", async () => {
      await navigator.clipboard.writeText(source.value ?? source.textContent);
      button.textContent = "Copied";
    });
  }
  for (const link of document.querySelectorAll("a[data-progress]")) {
    const status = link.parentElement.querySelector(".progress");
    link.addEventListener("click", (event) => {
      if (!window.EventSource || !status) return;
      event.preventDefault();
      status.textContent = "queued";
      const source = new EventSource(link.dataset.progress);
      source.addEventListener("progress", (message) => {
        const data = JSON.parse(message.data);
        status.textContent = data.percent === undefined ? data.stage : `${data.stage} ${data.percent}%`;
      });
      source.addEventListener("ready", () => {
        source.close();
        status.textContent = "ready";
        window.location.href = link.href;
      });
      source.addEventListener("error", (message) => {
        source.close();
        status.textContent = message.data ? `failed: ${JSON.parse(message.data).message}` : "failed";
      });
    });
  }
});
