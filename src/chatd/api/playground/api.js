// The page's only door to the server: fetch with the key, the key's life (asked for on a
// 401, kept in this browser's localStorage only), OpenAI-shaped errors, and the SSE
// stream of a chat completion read from fetch's ReadableStream.

const KEY_ITEM = "chatd.apiKey";

/** An error the API answered: its HTTP status and OpenAI's error message. */
export class APIError extends Error {
  constructor(status, message, code = null) {
    super(message);
    this.name = "APIError";
    this.status = status;
    this.code = code;
  }
}

export function getKey() {
  return localStorage.getItem(KEY_ITEM) || "";
}

export function setKey(key) {
  localStorage.setItem(KEY_ITEM, key);
  keyListeners.forEach((fn) => fn(key));
}

export function forgetKey() {
  localStorage.removeItem(KEY_ITEM);
  keyListeners.forEach((fn) => fn(""));
}

const keyListeners = [];

/** Call ``fn(key)`` whenever the key changes (the header shows whether one is kept). */
export function onKeyChange(fn) {
  keyListeners.push(fn);
}

let askForKey = null;
let pendingAsk = null;

/** ``fn(reason)`` resolves to a key typed by the user, or null if they cancel. */
export function setKeyPrompt(fn) {
  askForKey = fn;
}

/** One dialog for every call refused at once (the page loads several things). */
function ask(reason) {
  if (!pendingAsk) {
    pendingAsk = Promise.resolve(askForKey(reason)).finally(() => {
      pendingAsk = null;
    });
  }
  return pendingAsk;
}

/** The error message of a failed response (OpenAI's ``{"error": {"message"}}``). */
async function readError(resp) {
  const text = await resp.text();
  try {
    const error = JSON.parse(text).error;
    if (error && error.message) return new APIError(resp.status, error.message, error.code);
  } catch {
    // not JSON: fall through to the status line
  }
  return new APIError(resp.status, `HTTP ${resp.status} ${resp.statusText} ${text}`.trim());
}

/**
 * fetch ``path`` on this server with the kept key. On a 401 the user is asked for a key
 * and the call is retried with it; any other failure throws an APIError.
 */
export async function request(path, { method = "GET", body, signal } = {}) {
  for (;;) {
    const headers = { Accept: "application/json" };
    const key = getKey();
    if (key) headers.Authorization = `Bearer ${key}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const resp = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
      cache: "no-store",
    });
    if (resp.ok) return resp;
    const error = await readError(resp);
    if (resp.status === 401 && askForKey) {
      const typed = await ask(error.message);
      if (typed) {
        if (typed !== getKey()) setKey(typed);
        continue;
      }
    }
    throw error;
  }
}

/** ``request`` and its JSON body. */
export async function getJSON(path, options) {
  return (await request(path, options)).json();
}

/**
 * The ``data:`` events of a server-sent event stream, parsed as JSON, until ``[DONE]``.
 * A chat stream's failure mid-way is an ``{"error": ...}`` event: thrown as an APIError.
 */
export async function* sseEvents(resp) {
  const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let cut;
      while ((cut = buffer.search(/\r?\n\r?\n/)) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut).replace(/^\r?\n\r?\n/, "");
        const data = block
          .split(/\r?\n/)
          .filter((line) => line.startsWith("data:"))
          .map((line) => line.slice(5).replace(/^ /, ""))
          .join("\n");
        if (!data) continue;
        if (data === "[DONE]") return;
        const event = JSON.parse(data);
        if (event.error) throw new APIError(0, event.error.message, event.error.code);
        yield event;
      }
    }
  } finally {
    reader.cancel().catch(() => {}); // after [DONE] or a failure: nothing more is read
  }
  throw new APIError(0, "The stream ended without [DONE]: the answer is incomplete.");
}
