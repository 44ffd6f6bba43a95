// C2SP primitives written from the spec texts alone (no fleetkeys code was read or translated), shared by
// witness_client.mjs and witness_server.mjs. Node.js 20, standard library only (WebCrypto Ed25519).
//
// Implements:
//   c2sp.org/signed-note@v1.0.0     "Format", "Signatures", "Ed25519 signatures", "Verifier keys"
//   c2sp.org/tlog-checkpoint@v1.0.0 "Note text"
//   c2sp.org/tlog-cosignature@v1.0.1 "Format", "Signed message" (Ed25519, key type 0x04, cosignature/v1)
//   RFC 9162 §2.1.1 (Merkle Tree Hash), §2.1.4.1 (generating a consistency proof), §2.1.4.2 (verifying one)
//   RFC 4648 §4 base64 (standard alphabet, padded; only the canonical encoding is accepted)

import { webcrypto as crypto } from "node:crypto";

const subtle = crypto.subtle;
const enc = new TextEncoder();
const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

export const EM_DASH = "\u2014";
export const SIG_ED25519 = 0x01;
export const SIG_COSIGNATURE_V1 = 0x04;
export const MAX_U63 = (1n << 63n) - 1n;

export class SpecError extends Error {}

// ---- bytes -------------------------------------------------------------------------------------------------------

export const utf8 = (s) => enc.encode(s);
export const concat = (...parts) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
};
export const equal = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);
export const hex = (b) => Buffer.from(b).toString("hex");
export const fromHex = (s) => new Uint8Array(Buffer.from(s, "hex"));
export const b64 = (b) => Buffer.from(b).toString("base64");

/** RFC 4648 §4 base64, canonical only: Buffer.from is lenient, so re-encode and compare. */
export function unb64(text, what) {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 !== 0) throw new SpecError(`${what}: not base64`);
  const raw = new Uint8Array(Buffer.from(text, "base64"));
  if (b64(raw) !== text) throw new SpecError(`${what}: not canonical base64`);
  return raw;
}

/** An ASCII decimal with no leading zeroes ("0" for zero), at most 2^63 - 1, as a BigInt. */
export function parseDecimal(text, what) {
  if (!/^(0|[1-9][0-9]{0,18})$/.test(text)) throw new SpecError(`${what}: not a decimal without leading zeroes`);
  const n = BigInt(text);
  if (n > MAX_U63) throw new SpecError(`${what}: above 2^63 - 1`);
  return n;
}

export async function sha256(...parts) {
  return new Uint8Array(await subtle.digest("SHA-256", concat(...parts)));
}

// ---- Ed25519 (RFC 8032) via WebCrypto ----------------------------------------------------------------------------

const PKCS8_ED25519 = fromHex("302e020100300506032b657004220420");

/** A signing key from a 32-byte seed: {publicKey: Uint8Array(32), sign(msg) -> Uint8Array(64)}. */
export async function keyFromSeed(seed) {
  const priv = await subtle.importKey("pkcs8", concat(PKCS8_ED25519, seed), { name: "Ed25519" }, true, ["sign"]);
  const jwk = await subtle.exportKey("jwk", priv);
  const publicKey = new Uint8Array(Buffer.from(jwk.x, "base64url"));
  return { publicKey, sign: async (msg) => new Uint8Array(await subtle.sign({ name: "Ed25519" }, priv, msg)) };
}

export async function ed25519Verify(publicKey, signature, message) {
  if (signature.length !== 64) return false;
  const key = await subtle.importKey("raw", publicKey, { name: "Ed25519" }, false, ["verify"]);
  return subtle.verify({ name: "Ed25519" }, key, signature, message);
}

// ---- signed-note -------------------------------------------------------------------------------------------------

/** "Key names MUST be non-empty and MUST NOT contain any Unicode spaces or plus (U+002B) characters." */
export function validKeyName(name) {
  return name.length > 0 && !/[\s+\u0085\u00a0\u1680\u180e\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]/u.test(name);
}

/** "key ID = SHA-256(key name || 0x0A || signature type || public key)[:4]" (big-endian uint32). */
export async function keyId(name, type, publicKey) {
  return (await sha256(utf8(name), Uint8Array.of(0x0a, type), publicKey)).slice(0, 4);
}

/** "<key name>+hex(32-bit key ID)+base64(signature type || public key)" */
export async function makeVkey(name, type, publicKey) {
  return `${name}+${hex(await keyId(name, type, publicKey))}+${b64(concat(Uint8Array.of(type), publicKey))}`;
}

/** Parse a vkey; "The key name and ID MUST match those used in the signatures" (checked against the key). */
export async function parseVkey(vkey) {
  const first = vkey.indexOf("+");
  const second = vkey.indexOf("+", first + 1);
  if (first < 0 || second < 0) throw new SpecError(`vkey ${vkey}: expected name+id+key`);
  const name = vkey.slice(0, first);
  const id = vkey.slice(first + 1, second);
  const material = unb64(vkey.slice(second + 1), "vkey key material");
  if (!validKeyName(name) || !/^[0-9a-f]{8}$/.test(id)) throw new SpecError(`vkey ${vkey}: bad name or id`);
  const type = material[0];
  const publicKey = material.slice(1);
  if ((type !== SIG_ED25519 && type !== SIG_COSIGNATURE_V1) || publicKey.length !== 32) {
    throw new SpecError(`vkey ${vkey}: not an Ed25519 (0x01) or cosignature/v1 (0x04) key`);
  }
  if (hex(await keyId(name, type, publicKey)) !== id) throw new SpecError(`vkey ${vkey}: key ID does not match`);
  return { name, id: fromHex(id), type, publicKey, vkey };
}

/**
 * Split a signed note (signed-note "Format"): "a text ending in newline (U+000A), followed by a blank line
 * (only a newline), followed by one or more signature lines of this form: em dash (U+2014), space (U+0020),
 * key name, space, base64-encoded signature, newline." "Signed notes MUST be valid UTF-8 and MUST NOT
 * contain any ASCII control characters (those below U+0020) other than newline." "the text is separated
 * from the signatures by the last empty line in the note." Returns {text: Uint8Array, sigs: [{name, id, sig}]}.
 */
export function splitNote(bytes) {
  let s;
  try { s = strictUtf8.decode(bytes); } catch { throw new SpecError("note: not valid UTF-8"); }
  if (/[\u0000-\u0009\u000b-\u001f]/.test(s)) throw new SpecError("note: control character");
  const split = s.lastIndexOf("\n\n");
  if (split < 0) throw new SpecError("note: no blank line");
  const text = s.slice(0, split + 1);
  const block = s.slice(split + 2);
  if (!block.endsWith("\n")) throw new SpecError("note: no signature lines");
  const sigs = block.slice(0, -1).split("\n").map((line) => {
    const m = /^\u2014 ([^ ]+) ([^ ]+)$/.exec(line);
    if (!m || !validKeyName(m[1])) throw new SpecError(`note: malformed signature line ${line.slice(0, 60)}`);
    const raw = unb64(m[2], `signature by ${m[1]}`);
    if (raw.length < 5) throw new SpecError(`note: signature by ${m[1]} too short`);
    return { name: m[1], id: raw.slice(0, 4), sig: raw.slice(4), line: line + "\n" };
  });
  if (sigs.length > 100) throw new SpecError("note: more than 100 signatures");
  return { text: utf8(text), sigs };
}

const matches = (v, s) => v.name === s.name && equal(v.id, s.id);

/**
 * Open a note with Ed25519 (type 0x01) verifier keys (signed-note "Signatures"): "Verifiers MUST ignore
 * signatures from unknown keys, even if they share a name or ID (but not both) with a known key. If the key
 * name and ID match a known key, verifiers MUST verify the signature. If a signature from a known key fails to
 * verify, clients SHOULD reject the whole note. If no signature from a known key verifies successfully, clients
 * MUST reject the note." Returns {text, sigs, verifiedBy: [vkey]}; throws SpecError with .kind "signature".
 */
export async function openNote(bytes, verifiers) {
  const note = splitNote(bytes);
  const verifiedBy = [];
  for (const s of note.sigs) {
    const v = verifiers.find((k) => k.type === SIG_ED25519 && matches(k, s));
    if (!v) continue;
    if (!(await ed25519Verify(v.publicKey, s.sig, note.text))) {
      throw Object.assign(new SpecError(`note: signature by known key ${v.name} does not verify`), { kind: "signature" });
    }
    if (!verifiedBy.includes(v.vkey)) verifiedBy.push(v.vkey);
  }
  if (verifiedBy.length === 0) throw Object.assign(new SpecError("note: no signature by a known key"), { kind: "signature" });
  return { ...note, verifiedBy };
}

// ---- tlog-checkpoint ---------------------------------------------------------------------------------------------

/**
 * "The note text is a sequence of at least three non-empty lines": origin (non-empty), tree size (ASCII decimal,
 * no leading zeroes), root hash (base64 of the RFC 6962 root), then optional non-empty extension lines.
 */
export function parseCheckpoint(text) {
  const s = Buffer.from(text).toString("utf8");
  if (!s.endsWith("\n")) throw new SpecError("checkpoint: text must end in a newline");
  const lines = s.slice(0, -1).split("\n");
  if (lines.length < 3 || lines.some((l) => l.length === 0)) throw new SpecError("checkpoint: needs three or more non-empty lines");
  const [origin, size, root, ...extensions] = lines;
  const rootHash = unb64(root, "checkpoint root");
  if (rootHash.length !== 32) throw new SpecError("checkpoint root: not a 32-byte hash");
  return { origin, size: parseDecimal(size, "checkpoint size"), root: rootHash, extensions };
}

export function checkpointText(origin, size, root, extensions = []) {
  return utf8([origin, String(size), b64(root), ...extensions].join("\n") + "\n");
}

// ---- tlog-cosignature/v1 -----------------------------------------------------------------------------------------

/** "cosignature/v1\n" "time <timestamp as ASCII decimal, no leading zeroes>\n" || the whole checkpoint text. */
export function cosignedMessage(text, timestamp) {
  return concat(utf8(`cosignature/v1\ntime ${BigInt(timestamp).toString(10)}\n`), text);
}

const u64be = (n) => { const b = new Uint8Array(8); new DataView(b.buffer).setBigUint64(0, BigInt(n)); return b; };

/** The signature line of a cosignature: "— <name> base64(key ID || u64 timestamp (big-endian) || signature)\n". */
export async function cosign(name, key, text, timestamp) {
  if (BigInt(timestamp) < 0n || BigInt(timestamp) > MAX_U63) throw new SpecError("timestamp exceeds 2^63 - 1");
  const sig = await key.sign(cosignedMessage(text, timestamp));
  const id = await keyId(name, SIG_COSIGNATURE_V1, key.publicKey);
  return `${EM_DASH} ${name} ${b64(concat(id, u64be(timestamp), sig))}\n`;
}

/**
 * Verify the cosignatures on a note by type-0x04 vkeys: "Clients are configured with tuples of (cosigner name,
 * public key, supported cosignature version) and based on that they can compute the expected name and key ID,
 * and ignore any signature lines that don't match the name and key ID." "The signature MUST be a 72-byte
 * timestamped_signature structure." Returns [{vkey, timestamp (BigInt)}], one per cosigner; throws on a
 * matching line that does not verify.
 */
export async function verifyCosignatures(bytes, cosigners) {
  const note = splitNote(bytes);
  const found = [];
  for (const s of note.sigs) {
    const v = cosigners.find((k) => k.type === SIG_COSIGNATURE_V1 && matches(k, s));
    if (!v) continue;
    if (s.sig.length !== 72) throw new SpecError(`cosignature by ${v.name}: not 72 bytes`);
    const timestamp = new DataView(s.sig.buffer, s.sig.byteOffset).getBigUint64(0);
    if (timestamp > MAX_U63) throw new SpecError(`cosignature by ${v.name}: timestamp exceeds 2^63 - 1`);
    if (!(await ed25519Verify(v.publicKey, s.sig.slice(8), cosignedMessage(note.text, timestamp)))) {
      throw new SpecError(`cosignature by ${v.name} does not verify`);
    }
    if (!found.some((f) => f.vkey === v.vkey)) found.push({ vkey: v.vkey, timestamp });
  }
  return found;
}

// ---- RFC 9162 Merkle trees ---------------------------------------------------------------------------------------

export const leafHash = (entry) => sha256(Uint8Array.of(0x00), entry);
export const nodeHash = (left, right) => sha256(Uint8Array.of(0x01), left, right);
const largestPow2Below = (n) => { let k = 1; while (k * 2 < n) k *= 2; return k; };

/** §2.1.1 MTH over leaf hashes. */
export async function mth(leaves) {
  if (leaves.length === 0) return sha256(new Uint8Array(0));
  if (leaves.length === 1) return leaves[0];
  const k = largestPow2Below(leaves.length);
  return nodeHash(await mth(leaves.slice(0, k)), await mth(leaves.slice(k)));
}

/** §2.1.4.1 PROOF(m, D[n]) = SUBPROOF(m, D[n], true), over leaf hashes. */
export async function consistencyProof(m, leaves) {
  async function subproof(m, d, b) {
    const n = d.length;
    if (m === n) return b ? [] : [await mth(d)];
    const k = largestPow2Below(n);
    if (m <= k) return [...(await subproof(m, d.slice(0, k), b)), await mth(d.slice(k))];
    return [...(await subproof(m - k, d.slice(k), false)), await mth(d.slice(0, k))];
  }
  return subproof(m, leaves, true);
}

/** §2.1.4.2 verification, for 0 < first < second (BigInt sizes). Returns true or false. */
export async function verifyConsistency(first, second, path, firstHash, secondHash) {
  if (!(0n < first && first < second)) return false;
  if (path.length === 0) return false;                                            // step 1
  const p = (first & (first - 1n)) === 0n ? [firstHash, ...path] : [...path];     // step 2
  let fn = first - 1n;                                                            // step 3
  let sn = second - 1n;
  while (fn & 1n) { fn >>= 1n; sn >>= 1n; }                                       // step 4
  let fr = p[0];                                                                  // step 5
  let sr = p[0];
  for (const c of p.slice(1)) {                                                   // step 6
    if (sn === 0n) return false;                                                  // 6a
    if ((fn & 1n) || fn === sn) {                                                 // 6b
      fr = await nodeHash(c, fr);
      sr = await nodeHash(c, sr);
      if (!(fn & 1n)) { while (!(fn & 1n) && fn !== 0n) { fn >>= 1n; sn >>= 1n; } }
    } else {
      sr = await nodeHash(sr, c);
    }
    fn >>= 1n;                                                                    // 6c
    sn >>= 1n;
  }
  return equal(fr, firstHash) && equal(sr, secondHash) && sn === 0n;              // step 7
}
