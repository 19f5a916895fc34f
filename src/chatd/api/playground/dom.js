// Small DOM helpers shared by the modules: build elements without innerHTML (what the
// server or the model says is always text, never markup).

/** An element with attributes (data-* and aria-* included) and children (strings are text). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

/** The element with this data-testid (the page's stable handles, used by the tests too). */
export function byTestId(id, root = document) {
  return root.querySelector(`[data-testid="${id}"]`);
}

/** Show a message in an inline error element, or hide it (message empty). */
export function showError(node, message) {
  node.textContent = message || "";
  node.hidden = !message;
}
