// A C2SP tlog-witness client and tlog-cosignature/v1 verifier, written from the spec texts alone.
//
// Implements c2sp.org/tlog-witness@v1.0.0 "add-checkpoint" (client side: the request body, the 200 response
// as "a sequence of one or more note signature lines", the 409 "text/x.tlog.size" body and the retry from that
// size, HTTP keep-alive), c2sp.org/tlog-cosignature@v1.0.1 (verification), c2sp.org/signed-note@v1.0.0 and
// c2sp.org/tlog-checkpoint@v1.0.0 (the log's checkpoints, signed here), RFC 9162 §2.1 (the log's tree and its
// consistency proofs). Primitives: ./c2sp.mjs.
//
// Usage: node witness_client.mjs < request.json > result.json
//
//   {"mode": "add",                                  (the default)
//    "url": "http://host:port",                      the submission prefix
//    "log": {"origin": "...", "name": "...", "seed": "<hex, 32 bytes>"},   name defaults to origin
//    "witnesses": ["<type 0x04 vkey>", ...],         trusted cosigners (others' lines are ignored)
//    "entries": ["<utf-8 entry>", ...],              the log's entries
//    "requests": [{"size": N,                        the checkpoint to submit: the first N entries
//                  "old": M | "auto",                the old size; "auto": the last size this client got
//                                                    cosigned (0 at first), then once more with the size
//                                                    of a 409 answer
//                  "proof_from": K,                  send the proof from K instead of from the old size
//                  "proof_hex": ["..."],             send these proof lines instead
//                  "sign_seed": "<hex>",             sign the checkpoint with another key
//                  "extensions": ["..."]}, ...]}
//   → {"log_vkey": "...", "results": [{"status", "content_type", "body", "old", "size", "attempts",
//                                      "cosignatures": [{"vkey", "timestamp"}], "cosigned_note", "error"}]}
//
//   {"mode": "verify", "note": "<signed note>", "log_vkeys": [...], "witnesses": [...]}
//   → {"text": "...", "verified_by": [...], "cosignatures": [{"vkey", "timestamp"}]} or {"error": "..."}

import * as c2sp from "./c2sp.mjs";

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString("utf8"));
}

/** The add-checkpoint body: "old <size>\n", one base64 hash per line, an empty line, the checkpoint. */
export function addCheckpointBody(oldSize, proof, note) {
  if (proof.length > 63) throw new c2sp.SpecError("The client MUST NOT send more than 63 consistency proof lines.");
  const head = `old ${BigInt(oldSize).toString(10)}\n` + proof.map((h) => c2sp.b64(h) + "\n").join("") + "\n";
  return c2sp.concat(c2sp.utf8(head), note);
}

/** Parse a 200 body: "a sequence of one or more note signature lines, each starting with the — character
 * (U+2014) and ending with a newline character (U+000A)". */
function parseSignatureLines(body) {
  const s = Buffer.from(body).toString("utf8");
  if (!s.endsWith("\n")) throw new c2sp.SpecError("200 body: does not end in a newline");
  const lines = s.slice(0, -1).split("\n");
  if (lines.length === 0 || lines.some((l) => !l.startsWith(`${c2sp.EM_DASH} `))) {
    throw new c2sp.SpecError("200 body: not a sequence of signature lines");
  }
  return lines.map((l) => l + "\n");
}

/** A 409 body: "the tree size of the latest cosigned checkpoint in decimal, followed by a newline". */
function parseSizeBody(contentType, body) {
  if (contentType !== "text/x.tlog.size") throw new c2sp.SpecError(`409 Content-Type ${contentType}`);
  const s = Buffer.from(body).toString("latin1");
  if (!s.endsWith("\n")) throw new c2sp.SpecError("409 body: no final newline");
  return c2sp.parseDecimal(s.slice(0, -1), "409 size");
}

class Log {
  constructor(origin, name, key, entries) {
    Object.assign(this, { origin, name, key, entries });
  }

  static async create({ origin, name, seed }, entries) {
    const key = await c2sp.keyFromSeed(c2sp.fromHex(seed));
    const leaves = await Promise.all(entries.map((e) => c2sp.leafHash(c2sp.utf8(e))));
    return new Log(origin, name ?? origin, key, leaves);
  }

  async vkey() { return c2sp.makeVkey(this.name, c2sp.SIG_ED25519, this.key.publicKey); }

  async note(size, { extensions = [], key = this.key } = {}) {
    const text = c2sp.checkpointText(this.origin, size, await c2sp.mth(this.entries.slice(0, size)), extensions);
    const id = await c2sp.keyId(this.name, c2sp.SIG_ED25519, key.publicKey);
    const line = `${c2sp.EM_DASH} ${this.name} ${c2sp.b64(c2sp.concat(id, await key.sign(text)))}\n`;
    return c2sp.concat(text, c2sp.utf8("\n" + line));
  }

  async proof(from, size) {
    if (from === 0 || from === size) return [];
    return c2sp.consistencyProof(from, this.entries.slice(0, size));
  }
}

async function add(input) {
  const log = await Log.create(input.log, input.entries);
  const witnesses = await Promise.all((input.witnesses ?? []).map(c2sp.parseVkey));
  const results = [];
  let known = 0;
  for (const req of input.requests) {
    const key = req.sign_seed ? await c2sp.keyFromSeed(c2sp.fromHex(req.sign_seed)) : undefined;
    const note = await log.note(req.size, { extensions: req.extensions, key });
    let old = req.old === "auto" ? known : req.old;
    const result = { old, size: req.size, attempts: 0, cosignatures: [] };
    for (;;) {
      result.attempts += 1;
      const proof = req.proof_hex ? req.proof_hex.map(c2sp.fromHex)
        : await log.proof(req.proof_from ?? old, req.size);
      // Node's fetch keeps connections alive ("Clients SHOULD use ... HTTP keep-alive").
      const resp = await fetch(`${input.url}/add-checkpoint`, { method: "POST", body: addCheckpointBody(old, proof, note) });
      const body = new Uint8Array(await resp.arrayBuffer());
      Object.assign(result, { status: resp.status, content_type: resp.headers.get("content-type"),
                              body: Buffer.from(body).toString("utf8"), old });
      if (resp.status === 409 && req.old === "auto" && result.attempts === 1) {
        old = Number(parseSizeBody(result.content_type, body));  // "MAY initially make a request with a old size of zero"
        continue;
      }
      break;
    }
    try {
      if (result.status === 409) result.size_body = String(parseSizeBody(result.content_type, c2sp.utf8(result.body)));
      if (result.status === 200) {
        // "To parse the response, the client MAY concatenate it to the checkpoint, and use a note verification
        // function configured with the witness keys it trusts." Unknown keys' lines are ignored.
        parseSignatureLines(c2sp.utf8(result.body));
        const cosignedNote = c2sp.concat(note, c2sp.utf8(result.body));
        await c2sp.openNote(cosignedNote, [await c2sp.parseVkey(await log.vkey())]);
        const found = await c2sp.verifyCosignatures(cosignedNote, witnesses);
        result.cosignatures = found.map((f) => ({ vkey: f.vkey, timestamp: String(f.timestamp) }));
        result.cosigned_note = Buffer.from(cosignedNote).toString("utf8");
        known = req.size;
      }
    } catch (err) {
      result.error = String(err.message ?? err);
    }
    results.push(result);
  }
  return { log_vkey: await log.vkey(), results };
}

async function verify(input) {
  try {
    const logKeys = await Promise.all(input.log_vkeys.map(c2sp.parseVkey));
    const cosigners = await Promise.all((input.witnesses ?? []).map(c2sp.parseVkey));
    const bytes = c2sp.utf8(input.note);
    const opened = await c2sp.openNote(bytes, logKeys);
    c2sp.parseCheckpoint(opened.text);
    const found = await c2sp.verifyCosignatures(bytes, cosigners);
    return { text: Buffer.from(opened.text).toString("utf8"), verified_by: opened.verifiedBy,
             cosignatures: found.map((f) => ({ vkey: f.vkey, timestamp: String(f.timestamp) })) };
  } catch (err) {
    return { error: String(err.message ?? err) };
  }
}

const input = await readStdin();
const output = input.mode === "verify" ? await verify(input) : await add(input);
process.stdout.write(JSON.stringify(output) + "\n");
