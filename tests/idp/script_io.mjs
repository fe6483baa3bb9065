// What the test scripts share: the signing algorithms frontdesk may use, and reading the
// script's input from stdin.

export const ALGORITHMS = ['ES256', 'RS256', 'PS256', 'EdDSA'];

export async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return Buffer.concat(chunks).toString('utf8').trim();
}
