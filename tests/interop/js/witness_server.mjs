// A C2SP witness, written from the spec texts alone: c2sp.org/tlog-witness@v1.0.0 "add-checkpoint" (every
// status it names: 200, 400, 403, 404, 409 with its text/x.tlog.size body, 422; the atomic check-and-persist;
// "MUST persist the new checkpoint before responding"; keep-alive), making c2sp.org/tlog-cosignature@v1.0.1
// cosignatures (Ed25519, type 0x04), checking log signatures per c2sp.org/signed-note@v1.0.0 and checkpoints
// per c2sp.org/tlog-checkpoint@v1.0.0, consistency proofs per RFC 9162 §2.1.4.2. Where v1.0.0 names no status
// the editor's draft after it is followed: a size-0 checkpoint without the empty tree's root, and a proof sent
// with old size 0, are 422; a cosignature timestamp is never zero. Primitives: ./c2sp.mjs.
//
// Usage: node witness_server.mjs CONFIG.json     prints {"port": P, "vkey": "..."} on one line once listening
//
//   {"name": "<witness key name>", "seed": "<hex, 32 bytes>", "state": "<path of the JSON state file>",
//    "logs": [{"origin": "...", "vkeys": ["<type 0x01 vkey>", ...]}, ...], "port": 0, "host": "127.0.0.1"}
//
// State: {"<origin>": {"size": "<decimal>", "root": "<base64>", "timestamp": "<decimal>"}}, written to a
// temporary file that is fsync'd, renamed over the state file, and the directory fsync'd, before any 200.

import { closeSync, fsyncSync, openSync, readFileSync, renameSync, writeSync } from "node:fs";
import { createServer } from "node:http";
import { dirname } from "node:path";

import * as c2sp from "./c2sp.mjs";

const MAX_BODY = 256 * 1024;
const config = JSON.parse(readFileSync(process.argv[2], "utf8"));
const key = await c2sp.keyFromSeed(c2sp.fromHex(config.seed));
const logs = new Map();
for (const log of config.logs) logs.set(log.origin, await Promise.all(log.vkeys.map(c2sp.parseVkey)));
const vkey = await c2sp.makeVkey(config.name, c2sp.SIG_COSIGNATURE_V1, key.publicKey);

function loadState() {
  try { return JSON.parse(readFileSync(config.state, "utf8")); } catch (err) {
    if (err.code === "ENOENT") return {};
    throw err;
  }
}

let state = loadState();

/** Durable replacement of the state file: write, fsync, rename, fsync the directory. */
function persist(next) {
  const tmp = `${config.state}.tmp`;
  const fd = openSync(tmp, "w", 0o600);
  try { writeSync(fd, JSON.stringify(next)); fsyncSync(fd); } finally { closeSync(fd); }
  renameSync(tmp, config.state);
  const dir = openSync(dirname(config.state), "r");
  try { fsyncSync(dir); } finally { closeSync(dir); }
  state = next;
}

class Refusal extends Error {
  constructor(status, message, body = undefined, contentType = "text/plain; charset=utf-8") {
    super(message);
    Object.assign(this, { status, body: body ?? message + "\n", contentType });
  }
}

/** "a sequence of an old size line, zero or more consistency proof lines, and an empty line, followed by a
 * checkpoint"; "Each line MUST terminate in a newline character (U+000A)." */
function parseRequest(body) {
  const lines = [];
  let at = 0;
  for (;;) {
    const nl = body.indexOf(0x0a, at);
    if (nl < 0) throw new Refusal(400, "a line is not terminated by a newline");
    const line = Buffer.from(body.subarray(at, nl)).toString("latin1");
    at = nl + 1;
    if (line === "") break;
    lines.push(line);
    if (lines.length > 64) throw new Refusal(400, "more than 63 consistency proof lines");
  }
  if (lines.length === 0) throw new Refusal(400, "no old size line");
  const m = /^old (0|[1-9][0-9]*)$/.exec(lines[0]);
  if (!m) throw new Refusal(400, "the old size line must be 'old', a space and a decimal without leading zeroes");
  let oldSize;
  try { oldSize = c2sp.parseDecimal(m[1], "old size"); } catch (err) { throw new Refusal(400, err.message); }
  const proof = lines.slice(1).map((l, i) => {
    let h;
    try { h = c2sp.unb64(l, `proof line ${i + 1}`); } catch (err) { throw new Refusal(400, err.message); }
    if (h.length !== 32) throw new Refusal(400, `proof line ${i + 1}: not a single hash`);
    return h;
  });
  let note;
  let checkpoint;
  try {
    note = c2sp.splitNote(body.subarray(at));
    checkpoint = c2sp.parseCheckpoint(note.text);
  } catch (err) { throw new Refusal(400, `checkpoint: ${err.message}`); }
  return { oldSize, proof, noteBytes: body.subarray(at), note, checkpoint };
}

const EMPTY_ROOT = await c2sp.sha256(new Uint8Array(0));
let queue = Promise.resolve();

/** "checking the old size against the latest checkpoint and persisting the new checkpoint must be performed
 * atomically": every check-cosign-persist runs alone, in arrival order (a promise chain). */
function atomically(fn) {
  const run = queue.then(fn, fn);
  queue = run.then(() => undefined, () => undefined);
  return run;
}

async function addCheckpoint(body) {
  const req = parseRequest(body);
  const { origin, size, root } = req.checkpoint;
  // "If the checkpoint origin is unknown, the witness MUST respond with a "404 Not Found""
  const trusted = logs.get(origin);
  if (!trusted) throw new Refusal(404, "unknown origin");
  // "The witness MUST verify the checkpoint signature against the public key(s) it trusts for the checkpoint
  // origin, and it MUST ignore signatures from unknown keys." ... "403 Forbidden"
  try { await c2sp.openNote(req.noteBytes, trusted); } catch (err) { throw new Refusal(403, err.message); }
  // "The old size MUST be equal to or lower than the checkpoint size. Otherwise ... "400 Bad Request""
  if (req.oldSize > size) throw new Refusal(400, "old size larger than the checkpoint size");
  return atomically(async () => {
    const known = state[origin];
    const knownSize = known ? BigInt(known.size) : 0n;
    // "the old size matches the size of the latest checkpoint it cosigned ... (or zero ...)" else 409, body
    // "the tree size of the latest cosigned checkpoint in decimal, followed by a newline", text/x.tlog.size.
    if (req.oldSize !== knownSize) throw new Refusal(409, "old size mismatch", `${knownSize}\n`, "text/x.tlog.size");
    if (size === 0n && !c2sp.equal(root, EMPTY_ROOT)) throw new Refusal(422, "size 0 without the empty tree's root");
    if (req.oldSize === 0n) {
      // "The proof MUST be empty if the old size is zero."
      if (req.proof.length) throw new Refusal(422, "a proof with old size 0");
    } else if (req.oldSize === size) {
      if (req.proof.length) throw new Refusal(422, "a proof between equal sizes");
      // "If the old size matches the checkpoint size, the witness MUST check that the root hashes are also
      // identical. If they don't match, the witness MUST respond with a "409 Conflict""
      if (!c2sp.equal(root, c2sp.unb64(known.root, "state"))) {
        throw new Refusal(409, "same size, other root", `${knownSize}\n`, "text/x.tlog.size");
      }
    } else if (!(await c2sp.verifyConsistency(req.oldSize, size, req.proof, c2sp.unb64(known.root, "state"), root))) {
      throw new Refusal(422, "the consistency proof does not verify");  // "MUST NOT cosign the checkpoint"
    }
    const last = known ? BigInt(known.timestamp) : 0n;
    const now = BigInt(Math.floor(Date.now() / 1000));
    const timestamp = now > last ? now : last;
    if (timestamp <= 0n) throw new Refusal(503, "no clock");
    const line = await c2sp.cosign(config.name, key, req.note.text, timestamp);
    // "The witness MUST persist the new checkpoint before responding."
    persist({ ...state, [origin]: { size: String(size), root: c2sp.b64(root), timestamp: String(timestamp) } });
    return line;
  });
}

const server = createServer({ keepAliveTimeout: 5000 }, (request, response) => {
  const send = (status, body, contentType = "text/plain; charset=utf-8", headers = {}) => {
    response.writeHead(status, { "Content-Type": contentType, ...headers });
    response.end(body);
  };
  const url = new URL(request.url, "http://witness");
  if (request.method === "GET" && url.pathname === "/") return send(200, JSON.stringify({ vkey }), "application/json");
  if (url.pathname !== "/add-checkpoint") return send(404, "not found\n");
  // "The request MUST be an HTTP POST."
  if (request.method !== "POST") return send(405, "POST only\n", undefined, { Allow: "POST" });
  const chunks = [];
  let length = 0;
  request.on("data", (chunk) => {
    length += chunk.length;
    if (length <= MAX_BODY) chunks.push(chunk);
  });
  request.on("end", () => {
    if (length > MAX_BODY) return send(413, "request too large\n");
    addCheckpoint(new Uint8Array(Buffer.concat(chunks))).then(
      (line) => send(200, line),
      (err) => (err instanceof Refusal ? send(err.status, err.body, err.contentType) : send(500, `${err.message}\n`)),
    );
  });
});

server.listen(config.port ?? 0, config.host ?? "127.0.0.1", () => {
  process.stdout.write(JSON.stringify({ port: server.address().port, vkey }) + "\n");
});
