/**
 * Server-Sent Events (the WHATWG `text/event-stream` format) read from a fetch body.
 *
 * The service sends `id:`, `event:` and one `data:` line per event and `: keepalive` comments
 * (executor/api/events.py); this parser takes the whole format (several data lines, CR/LF/CRLF
 * line ends, a BOM, `retry:`), so a proxy that re-wraps lines does not break it.
 */

export interface ServerSentEvent {
  id: string | undefined;
  event: string;
  data: string;
  retry: number | undefined;
}

export async function* parseEventStream(body: ReadableStream<Uint8Array>): AsyncGenerator<ServerSentEvent> {
  const decoder = new TextDecoder("utf-8");
  let buffer = "";
  let first = true;
  let id: string | undefined;
  let event = "";
  let data: string[] = [];
  let retry: number | undefined;

  const line = (text: string): ServerSentEvent | undefined => {
    if (text === "") {
      const done = data.length ? { id, event: event || "message", data: data.join("\n"), retry } : undefined;
      event = "";
      data = [];
      retry = undefined;
      return done;
    }
    if (text.startsWith(":")) return undefined;
    const colon = text.indexOf(":");
    const field = colon < 0 ? text : text.slice(0, colon);
    let value = colon < 0 ? "" : text.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") event = value;
    else if (field === "data") data.push(value);
    else if (field === "id" && !value.includes("\0")) id = value;
    else if (field === "retry" && /^\d+$/.test(value)) retry = Number(value);
    return undefined;
  };

  const reader = body.getReader();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      buffer += done ? decoder.decode() : decoder.decode(value, { stream: true });
      if (first && buffer.length) {
        if (buffer.startsWith("\ufeff")) buffer = buffer.slice(1);
        first = false;
      }
      // Complete lines only; a trailing CR may be the first half of a CRLF.
      let match: RegExpExecArray | null;
      const ends = /\r\n|\n|\r(?!$)/g;
      let start = 0;
      while ((match = ends.exec(buffer)) !== null) {
        const found = line(buffer.slice(start, match.index));
        start = match.index + match[0].length;
        if (found) yield found;
      }
      buffer = buffer.slice(start);
      if (done) {
        if (buffer.endsWith("\r")) {
          const found = line(buffer.slice(0, -1));
          if (found) yield found;
        }
        return; // an event not ended by a blank line is dropped, as the format says
      }
    }
  } finally {
    reader.releaseLock();
    await body.cancel().catch(() => undefined);
  }
}
