// The page's wiring: tabs, the key dialog (shown when the server answers 401; the key is
// kept in localStorage only, "Forget key" removes it), then the model picker, the chat,
// the Complete tab (a raw prompt: the legacy Completions API) and the stored-completions
// browser.

import { forgetKey, getKey, onKeyChange, setKeyPrompt } from "./api.js";
import { Chat } from "./chat.js";
import { Completer } from "./complete.js";
import { byTestId, showError } from "./dom.js";
import { ModelPicker } from "./models.js";
import { Params } from "./params.js";
import { StoredBrowser } from "./stored.js";

/** Ask for a key in the dialog: resolves to the key typed, or null when cancelled. */
function keyDialog(reason) {
  const dialog = byTestId("key-dialog");
  const input = byTestId("key-input");
  byTestId("key-reason").textContent = reason || "This server needs an API key.";
  input.value = "";
  return new Promise((resolve) => {
    const done = (key) => {
      dialog.removeEventListener("close", onClose);
      byTestId("key-cancel").removeEventListener("click", onCancel);
      if (dialog.open) dialog.close();
      resolve(key);
    };
    const onClose = () => done(dialog.returnValue === "ok" && input.value.trim() ? input.value.trim() : null);
    const onCancel = () => done(null);
    dialog.addEventListener("close", onClose);
    byTestId("key-cancel").addEventListener("click", onCancel);
    dialog.returnValue = "";
    dialog.showModal();
    input.focus();
  });
}

function showKeyState(key) {
  byTestId("key-state").textContent = key ? "key kept in this browser" : "no key";
  byTestId("forget-key").hidden = !key;
}

function setupTabs() {
  const tabs = [byTestId("tab-chat"), byTestId("tab-complete"), byTestId("tab-stored")];
  for (const tab of tabs) {
    tab.addEventListener("click", () => {
      for (const other of tabs) {
        const selected = other === tab;
        other.setAttribute("aria-selected", String(selected));
        document.getElementById(other.getAttribute("aria-controls")).hidden = !selected;
      }
      tab.dispatchEvent(new CustomEvent("shown"));
    });
  }
}

async function main() {
  setKeyPrompt(keyDialog);
  onKeyChange(showKeyState);
  showKeyState(getKey());
  setupTabs();

  const models = new ModelPicker(byTestId("model-select"), byTestId("model-routes"));
  const params = new Params();
  new Chat({ models, params });
  new Completer({ models, params });
  const stored = new StoredBrowser();

  const modelsError = byTestId("models-error");
  const loadModels = () => models
      .load()
      .then(() => showError(modelsError, ""))
      .catch((e) => showError(modelsError, e.message));
  byTestId("models-refresh").addEventListener("click", loadModels);
  byTestId("forget-key").addEventListener("click", () => forgetKey());
  byTestId("tab-stored").addEventListener("shown", () => stored.search());
  await loadModels();
  document.body.dataset.ready = "true";
}

main();
