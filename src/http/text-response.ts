/**
 * A short plain-text answer (an error, a refusal, a note), with its Content-Length, so that the server
 * frames it by length rather than in chunks and a client can show it whole.
 */
export function textResponse(status: number, body: string, headers: Record<string, string> = {}): Response {
  const bytes = new TextEncoder().encode(body);
  return new Response(bytes, {
    status,
    headers: { "Content-Type": "text/plain; charset=utf-8", "Content-Length": String(bytes.length), ...headers },
  });
}
