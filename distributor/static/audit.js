// fleetkeys audit page: fetches the log through the public read API and verifies it with WebCrypto.
//
// Root of trust: the log key (a C2SP verifier key, type 0x01 Ed25519). It comes from /api/v1/info
// unless the visitor pins one in the URL fragment (#log-key=<vkey>). With it the page checks:
//   1. /checkpoint: C2SP signed note; the log's signature line "— <origin> base64(keyid4 || sig64)"
//      verifies over the note body (origin, size, base64 root, extensions). Its time, by the same
//      rule as the clients (bundles/FORMAT.md §9.3, verifier.cosignature.checkpoint_time): when the
//      trust root in /api/v1/info requires K > 0 witnesses, K distinct witness cosignatures (type 0x04:
//      "cosignature/v1\ntime <t>\n" || body) with times in [now - max_age, now + 300] and the K-th
//      newest of them shown; else the log's freshness cosignature, checked and its time shown.
//   2. every epoch shown (/api/v1/bundles/<epoch>): the tlog-proof's checkpoint is signed by the log
//      key and consistent with the current one (RFC 9162 consistency proof when sizes differ); the
//      bundle's leaf hash SHA-256(0x00 || bundle) is at the proof's index (RFC 9162 inclusion);
//      SHA-256(keyset) equals the statement digest (protobuf or bincode statement, FORMAT.md §4);
//      statement, keyset and listing agree on the epoch; keyset.previous = SHA-256(previous keyset).
// Everything received is data: the page is built with createElement/textContent only.
"use strict";

(() => {
  const MAX_NOTE = 64 * 1024;
  const MAX_JSON = 1024 * 1024;
  const PAGE = 20;
  const MAX_U63 = (1n << 63n) - 1n;
  const enc = new TextEncoder();
  const dec = new TextDecoder("utf-8", { fatal: true });

  class Failure extends Error {}

  // -- DOM helpers (text only) -----------------------------------------------------------------
  const $ = (id) => document.getElementById(id);

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v;
      else node.setAttribute(k, String(v));
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      node.append(typeof c === "string" || typeof c === "number" || typeof c === "bigint" ? String(c) : c);
    }
    return node;
  }

  function setText(id, text) {
    $(id).textContent = String(text);
  }

  function badge(ok, text) {
    return el("span", { class: ok === null ? "badge pending" : ok ? "badge ok" : "badge fail" }, text);
  }

  function setBadge(id, ok, text) {
    const node = $(id);
    node.className = ok === null ? "badge pending" : ok ? "badge ok" : "badge fail";
    node.textContent = text;
  }

  // -- bytes ---------------------------------------------------------------------------------
  function concat(...parts) {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let pos = 0;
    for (const p of parts) {
      out.set(p, pos);
      pos += p.length;
    }
    return out;
  }

  function equal(a, b) {
    if (a.length !== b.length) return false;
    let diff = 0;
    for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
    return diff === 0;
  }

  const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");

  function b64encode(bytes) {
    let s = "";
    for (const b of bytes) s += String.fromCharCode(b);
    return btoa(s);
  }

  // Standard padded base64, canonical encoding only (as verifier.note.b64decode_strict).
  function b64decode(text, what) {
    if (typeof text !== "string" || text.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(text)) {
      throw new Failure(`${what}: not canonical base64`);
    }
    const raw = atob(text);
    const out = Uint8Array.from(raw, (c) => c.charCodeAt(0));
    if (b64encode(out) !== text) throw new Failure(`${what}: not canonical base64`);
    return out;
  }

  function utf8(bytes, what) {
    try {
      return dec.decode(bytes);
    } catch {
      throw new Failure(`${what}: not UTF-8`);
    }
  }

  function decimal(text, what) {
    if (!/^(0|[1-9][0-9]{0,19})$/.test(text)) throw new Failure(`${what}: not a canonical decimal`);
    const v = BigInt(text);
    if (v > MAX_U63) throw new Failure(`${what}: too large`);
    return v;
  }

  async function sha256(bytes) {
    return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  }

  const leafHash = (entry) => sha256(concat(Uint8Array.of(0), entry));
  const nodeHash = (l, r) => sha256(concat(Uint8Array.of(1), l, r));

  // -- HTTP (same origin, capped) ---------------------------------------------------------------
  async function fetchBytes(path, limit) {
    let res;
    try {
      res = await fetch(path, { cache: "no-store", credentials: "omit", redirect: "error" });
    } catch (e) {
      throw new Failure(`GET ${path}: ${e.message}`);
    }
    if (!res.ok) throw new Failure(`GET ${path}: HTTP ${res.status}`);
    const reader = res.body.getReader();
    const chunks = [];
    let total = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.length;
      if (total > limit) {
        await reader.cancel();
        throw new Failure(`GET ${path}: response larger than ${limit} bytes`);
      }
      chunks.push(value);
    }
    return concat(...chunks);
  }

  async function fetchJSON(path) {
    const body = await fetchBytes(path, MAX_JSON);
    let value;
    try {
      value = JSON.parse(utf8(body, path));
    } catch (e) {
      if (e instanceof Failure) throw e;
      throw new Failure(`GET ${path}: not JSON`);
    }
    if (value === null || typeof value !== "object" || Array.isArray(value)) {
      throw new Failure(`GET ${path}: expected a JSON object`);
    }
    return value;
  }

  // -- C2SP signed notes, verifier keys, checkpoints -----------------------------------------------
  // vkey = name "+" hex8(key id) "+" base64(type || 32-byte key); key id = SHA-256(name || "\n" || type || key)[:4]
  async function parseVkey(text, type, what) {
    // name and key id end at the first two "+" (base64 may contain "+"), as Go's note.NewVerifier.
    const m = typeof text === "string" ? /^([^+]+)\+([^+]*)\+(.*)$/s.exec(text) : null;
    const parts = m ? [m[1], m[2], m[3]] : [];
    if (parts.length !== 3 || /\s/.test(parts[0]) || !/^[0-9a-f]{8}$/.test(parts[1])) {
      throw new Failure(`${what}: not a C2SP verifier key`);
    }
    const raw = b64decode(parts[2], what);
    if (raw.length !== 33 || raw[0] !== type) {
      throw new Failure(`${what}: expected a type 0x0${type} Ed25519 key`);
    }
    const keyId = (await sha256(concat(enc.encode(parts[0] + "\n"), raw))).slice(0, 4);
    if (hex(keyId) !== parts[1]) throw new Failure(`${what}: key id does not match the key`);
    let key;
    try {
      key = await crypto.subtle.importKey("raw", raw.slice(1), { name: "Ed25519" }, false, ["verify"]);
    } catch (e) {
      throw new Failure(`${what}: WebCrypto cannot import it as Ed25519 (${e.message})`);
    }
    return { name: parts[0], keyId, key, text };
  }

  async function ed25519Verify(vkey, message, signature) {
    if (signature.length !== 64) return false;
    return crypto.subtle.verify({ name: "Ed25519" }, vkey.key, signature, message);
  }

  // Split a note: body = everything up to and including the newline before the last blank line.
  function parseNote(bytes) {
    if (bytes.length > MAX_NOTE) throw new Failure("checkpoint: larger than 64 KiB");
    const text = utf8(bytes, "checkpoint");
    if (/[\u0000-\u0009\u000b-\u001f]/.test(text)) throw new Failure("checkpoint: control character");
    const split = text.lastIndexOf("\n\n");
    if (split < 0) throw new Failure("checkpoint: no blank line before the signatures");
    const body = text.slice(0, split + 1);
    const block = text.slice(split + 2);
    if (!block || !block.endsWith("\n")) throw new Failure("checkpoint: signature block missing");
    const sigs = block.slice(0, -1).split("\n").map((line) => {
      const m = /^\u2014 (\S+) (\S+)$/.exec(line);
      if (!m) throw new Failure("checkpoint: malformed signature line");
      const raw = b64decode(m[2], `signature by ${m[1]}`);
      if (raw.length < 5) throw new Failure(`checkpoint: signature by ${m[1]} too short`);
      return { name: m[1], keyId: raw.slice(0, 4), sig: raw.slice(4) };
    });
    if (sigs.length > 100) throw new Failure("checkpoint: too many signatures");
    return { body, bodyBytes: enc.encode(body), sigs };
  }

  // Verify the log's signature over a checkpoint note, then parse its body (origin, size, root).
  async function openCheckpoint(bytes, logKey) {
    const note = parseNote(bytes);
    const line = note.sigs.find((s) => s.name === logKey.name && equal(s.keyId, logKey.keyId));
    if (!line) throw new Failure(`checkpoint is not signed by the log key ${logKey.name}+${hex(logKey.keyId)}`);
    if (!(await ed25519Verify(logKey, note.bodyBytes, line.sig))) {
      throw new Failure("the log signature on the checkpoint does not verify");
    }
    const lines = note.body.slice(0, -1).split("\n");
    if (lines.length < 3) throw new Failure("checkpoint: fewer than 3 lines");
    if (lines[0] !== logKey.name) throw new Failure(`checkpoint origin ${lines[0]} is not ${logKey.name}`);
    const size = decimal(lines[1], "checkpoint size");
    const root = b64decode(lines[2], "checkpoint root");
    if (root.length !== 32) throw new Failure("checkpoint root: not 32 bytes");
    return { body: note.body, bodyBytes: note.bodyBytes, size, root, sigs: note.sigs };
  }

  // C2SP tlog-cosignature/v1: base64(keyid4 || timestamp8 || sig64) over "cosignature/v1\ntime <t>\n" || body.
  async function verifyCosignature(cp, key, line, what) {
    if (line.sig.length !== 72) throw new Failure(`${what}: not 72 bytes`);
    let t = 0n;
    for (const b of line.sig.slice(0, 8)) t = (t << 8n) | BigInt(b);
    const msg = concat(enc.encode(`cosignature/v1\ntime ${t}\n`), cp.bodyBytes);
    if (!(await ed25519Verify(key, msg, line.sig.slice(8)))) throw new Failure(`${what} does not verify`);
    return t;
  }

  async function verifyFreshness(cp, freshKey) {
    const line = cp.sigs.find((s) => s.name === freshKey.name && equal(s.keyId, freshKey.keyId));
    if (!line) throw new Failure("no freshness cosignature");
    return verifyCosignature(cp, freshKey, line, "the freshness cosignature");
  }

  // The witness policy of the trust root /api/v1/info serves (as unauthenticated as the log key it
  // names): {keys, threshold, maxAge}, or null when it requires no witnesses.
  async function witnessPolicy(info) {
    if (typeof info.trust_root !== "string") return null;
    const envelope = JSON.parse(utf8(b64decode(info.trust_root, "trust root"), "trust root"));
    const body = JSON.parse(utf8(b64decode(envelope && envelope.root, "trust root body"), "trust root body"));
    const w = body && body.witnesses;
    const maxAge = body && body.log && body.log.max_age;
    if (!w || !Array.isArray(w.keys) || !Number.isSafeInteger(w.threshold) || w.threshold < 0 ||
        w.threshold > w.keys.length || !Number.isSafeInteger(maxAge) || maxAge < 1) {
      throw new Failure("trust root: malformed witnesses or log.max_age");
    }
    if (w.threshold === 0) return null;
    const keys = [];
    for (const [i, v] of w.keys.entries()) keys.push(await parseVkey(v, 0x04, `witness key ${i + 1}`));
    return { keys, threshold: w.threshold, maxAge: BigInt(maxAge) };
  }

  // verifier.cosignature.witnessed_time: every line by a listed witness must verify; a witness counts
  // once, with its newest time in [now - maxAge, now + CLOCK_SKEW]; K must count, and the time is the
  // K-th newest (K - 1 colluding witnesses cannot push it). Fewer: stale (possible freeze) or too few.
  const CLOCK_SKEW = 300n;
  async function witnessedTime(cp, policy, now) {
    const k = policy.threshold;
    const newest = new Map();
    let stale = 0;
    let future = 0;
    for (const line of cp.sigs) {
      const i = policy.keys.findIndex((key) => key.name === line.name && equal(key.keyId, line.keyId));
      if (i < 0) continue;
      const t = await verifyCosignature(cp, policy.keys[i], line, `the witness cosignature by ${line.name}`);
      if (!newest.has(i)) newest.set(i, null);
      if (t > now + CLOCK_SKEW) future += 1;
      else if (now - t > policy.maxAge) stale += 1;
      else if (newest.get(i) === null || t > newest.get(i)) newest.set(i, t);
    }
    const fresh = [...newest.values()].filter((t) => t !== null).sort((a, b) => (a > b ? -1 : a < b ? 1 : 0));
    if (fresh.length >= k) return { time: fresh[k - 1], counted: fresh.length };
    if (newest.size >= k && stale) {
      throw new Failure(`witness cosignatures: ${newest.size} distinct trusted keys cosigned but only ${fresh.length} ` +
        `within the allowed ${policy.maxAge} s, ${k} required (${stale} stale witness cosignatures: the operator may be re-serving an old checkpoint, possible freeze by the operator)`);
    }
    throw new Failure(`witness cosignatures: ${fresh.length} distinct trusted keys cosigned, ${k} required` +
      (future ? `; ${future} dated more than ${CLOCK_SKEW} s in the future do not count` : ""));
  }

  const isoTime = (t) => new Date(Number(t) * 1000).toISOString().replace(/\.\d+Z$/, "Z");

  // -- RFC 9162 proofs (BigInt arithmetic: sizes go up to 2^63) -----------------------------------
  const bitLength = (n) => (n === 0n ? 0 : n.toString(2).length);
  const popcount = (n) => n.toString(2).split("").filter((c) => c === "1").length;

  function inclusionLength(index, size) {
    const inner = bitLength(index ^ (size - 1n));
    return inner + popcount(index >> BigInt(inner));
  }

  async function verifyInclusion(index, size, leaf, proof, root) {
    if (!(index >= 0n && index < size)) throw new Failure(`inclusion proof: index ${index} is not below size ${size}`);
    const expected = inclusionLength(index, size);
    if (proof.length !== expected) {
      throw new Failure(`inclusion proof: ${proof.length} hashes, expected ${expected}`);
    }
    let fn = index;
    let sn = size - 1n;
    let r = leaf;
    for (const p of proof) {
      if (sn === 0n) throw new Failure("inclusion proof: longer than the path to the root");
      if ((fn & 1n) === 1n || fn === sn) {
        r = await nodeHash(p, r);
        if ((fn & 1n) === 0n) {
          while (fn !== 0n && (fn & 1n) === 0n) {
            fn >>= 1n;
            sn >>= 1n;
          }
        }
      } else {
        r = await nodeHash(r, p);
      }
      fn >>= 1n;
      sn >>= 1n;
    }
    if (sn !== 0n) throw new Failure("inclusion proof: shorter than the path to the root");
    if (!equal(r, root)) throw new Failure("inclusion proof does not lead to the checkpoint root");
  }

  async function verifyConsistency(size1, size2, proof, root1, root2) {
    if (!(size1 > 0n && size1 <= size2)) throw new Failure("consistency proof: bad sizes");
    if (size1 === size2) {
      if (proof.length !== 0 || !equal(root1, root2)) throw new Failure("two checkpoints of one size differ: the log forked");
      return;
    }
    const shift = bitLength(size1 & -size1) - 1;
    const expected = inclusionLength(size1 - 1n, size2) - shift + ((size1 & (size1 - 1n)) === 0n ? 0 : 1);
    if (proof.length !== expected) throw new Failure(`consistency proof: ${proof.length} hashes, expected ${expected}`);
    const path = (size1 & (size1 - 1n)) === 0n ? [root1, ...proof] : [...proof];
    let fn = size1 - 1n;
    let sn = size2 - 1n;
    while ((fn & 1n) === 1n) {
      fn >>= 1n;
      sn >>= 1n;
    }
    let fr = path[0];
    let sr = path[0];
    for (const c of path.slice(1)) {
      if (sn === 0n) throw new Failure("consistency proof: longer than the path to the root");
      if ((fn & 1n) === 1n || fn === sn) {
        fr = await nodeHash(c, fr);
        sr = await nodeHash(c, sr);
        if ((fn & 1n) === 0n) {
          while (fn !== 0n && (fn & 1n) === 0n) {
            fn >>= 1n;
            sn >>= 1n;
          }
        }
      } else {
        sr = await nodeHash(sr, c);
      }
      fn >>= 1n;
      sn >>= 1n;
    }
    if (sn !== 0n) throw new Failure("consistency proof: shorter than the path to the root");
    if (!equal(fr, root1) || !equal(sr, root2)) throw new Failure("the checkpoints are not consistent: the log forked");
  }

  // c2sp.org/tlog-proof@v1: header, [extra], index, hashes, blank line, checkpoint.
  function parseTlogProof(text) {
    if (typeof text !== "string" || text.length > 128 * 1024) throw new Failure("tlog-proof: missing or too large");
    const split = text.indexOf("\n\n");
    if (split < 0) throw new Failure("tlog-proof: no blank line");
    const lines = text.slice(0, split).split("\n");
    const checkpoint = enc.encode(text.slice(split + 2));
    if (lines[0] !== "c2sp.org/tlog-proof@v1") throw new Failure("tlog-proof: wrong header");
    let pos = 1;
    if (pos < lines.length && lines[pos].startsWith("extra ")) pos++;
    if (pos >= lines.length || !lines[pos].startsWith("index ")) throw new Failure("tlog-proof: no index line");
    const index = decimal(lines[pos].slice(6), "tlog-proof index");
    const hashes = lines.slice(pos + 1).map((l, i) => {
      const h = b64decode(l, `tlog-proof hash ${i}`);
      if (h.length !== 32) throw new Failure(`tlog-proof hash ${i}: not 32 bytes`);
      return h;
    });
    if (hashes.length > 64) throw new Failure("tlog-proof: too many hashes");
    return { index, hashes, checkpoint };
  }

  // -- statements (FORMAT.md §4): ciphersuite 1 protobuf, ciphersuite 2 bincode --------------------
  function parseStatement(b) {
    let pos = 0;
    const need = (n) => {
      if (pos + n > b.length) throw new Failure("statement: truncated");
    };
    const varint = () => {
      let v = 0n;
      for (let shift = 0n; ; shift += 7n) {
        need(1);
        const byte = b[pos++];
        if (shift === 63n && byte > 1) throw new Failure("statement: varint too large");
        v |= BigInt(byte & 0x7f) << shift;
        if (!(byte & 0x80)) {
          if (byte === 0 && shift > 0n) throw new Failure("statement: non-minimal varint");
          return v;
        }
      }
    };
    const tag = (t) => {
      need(1);
      if (b[pos++] !== t) throw new Failure("statement: unexpected field");
    };
    const u64le = () => {
      need(8);
      let v = 0n;
      for (let i = 7; i >= 0; i--) v = (v << 8n) | BigInt(b[pos + i]);
      pos += 8;
      return v;
    };
    if (b.length === 0 || b.length > 512) throw new Failure("statement: empty or too large");
    let cs;
    let namespace;
    let epoch;
    let digest;
    if (b[0] === 0x08) {
      tag(0x08);
      cs = varint();
      tag(0x12);
      const n = Number(varint());
      need(n);
      namespace = utf8(b.slice(pos, pos + n), "statement namespace");
      pos += n;
      tag(0x18);
      varint();
      tag(0x22);
      const len = varint();
      const start = pos;
      tag(0x08);
      epoch = varint();
      if (BigInt(pos - start) !== len) throw new Failure("statement: epoch length mismatch");
      tag(0x2a);
      tag(0x20);
      need(32);
      digest = b.slice(pos, pos + 32);
      pos += 32;
      if (cs !== 1n) throw new Failure("statement: protobuf encoding must be ciphersuite 1");
    } else {
      need(4);
      cs = BigInt(b[0] | (b[1] << 8) | (b[2] << 16) | (b[3] << 24));
      pos = 4;
      if (cs !== 2n) throw new Failure("statement: unknown ciphersuite");
      const n = u64le();
      if (n > 256n) throw new Failure("statement: namespace too long");
      need(Number(n));
      namespace = utf8(b.slice(pos, pos + Number(n)), "statement namespace");
      pos += Number(n);
      u64le();
      epoch = u64le();
      if (u64le() !== 32n) throw new Failure("statement: digest length is not 32");
      need(32);
      digest = b.slice(pos, pos + 32);
      pos += 32;
    }
    if (pos !== b.length) throw new Failure("statement: trailing bytes");
    return { namespace, epoch, digest };
  }

  // -- one epoch ---------------------------------------------------------------------------------
  const state = { logKey: null, freshKey: null, checkpoint: null, checkpointError: null, witnessError: null,
    epochs: new Map() };
  const consistencyChecked = new Map();

  async function checkAgainstCurrent(cp) {
    const cur = state.checkpoint;
    if (cp.body === cur.body) return;
    const [small, big] = cp.size < cur.size ? [cp, cur] : [cur, cp];
    const key = `${small.size}-${big.size}-${hex(small.root)}-${hex(big.root)}`;
    if (!consistencyChecked.has(key)) {
      consistencyChecked.set(key, (async () => {
        if (small.size === big.size) throw new Failure("two checkpoints of one size differ: the log forked");
        const r = await fetchJSON(`/api/v1/proof/consistency?from=${small.size}&to=${big.size}`);
        if (!Array.isArray(r.proof)) throw new Failure("consistency proof: malformed response");
        const proof = r.proof.map((h, i) => {
          const v = b64decode(h, `consistency hash ${i}`);
          if (v.length !== 32) throw new Failure(`consistency hash ${i}: not 32 bytes`);
          return v;
        });
        await verifyConsistency(small.size, big.size, proof, small.root, big.root);
      })());
    }
    await consistencyChecked.get(key);
  }

  function fleetObjects(keyset) {
    if (!Array.isArray(keyset.fleets)) throw new Failure("keyset: no fleets list");
    return keyset.fleets.map((f) => {
      if (f === null || typeof f !== "object") throw new Failure("keyset: malformed fleet");
      for (const k of ["fleet_id", "algorithm", "status", "public_key", "not_before", "not_after"]) {
        if (typeof f[k] !== "string") throw new Failure(`keyset: fleet field ${k} missing`);
      }
      return f;
    });
  }

  // Verify one epoch; resolves to {ok, reason, ...} and never rejects.
  function verifyEpoch(epoch, row) {
    if (state.epochs.has(epoch)) return state.epochs.get(epoch);
    const work = (async () => {
      try {
        if (state.checkpointError) throw new Failure(`the checkpoint did not verify (${state.checkpointError})`);
        const api = await fetchJSON(`/api/v1/bundles/${epoch}`);
        const bundle = b64decode(api.bundle, "bundle");
        let env;
        try {
          env = JSON.parse(utf8(bundle, "bundle"));
        } catch (e) {
          throw e instanceof Failure ? e : new Failure("bundle: not JSON");
        }
        if (env === null || env.format !== "fleetkeys/bundle/v1") throw new Failure("bundle: wrong format");
        const statement = parseStatement(b64decode(env.statement, "bundle statement"));
        const keysetBytes = b64decode(env.keyset, "bundle keyset");
        const digest = await sha256(keysetBytes);
        if (!equal(digest, statement.digest)) {
          throw new Failure("the keyset's SHA-256 does not match the digest in the signed statement");
        }
        let keyset;
        try {
          keyset = JSON.parse(utf8(keysetBytes, "keyset"));
        } catch (e) {
          throw e instanceof Failure ? e : new Failure("keyset: not JSON");
        }
        if (keyset === null || typeof keyset !== "object") throw new Failure("keyset: not an object");
        if (statement.epoch !== BigInt(epoch) || keyset.epoch !== epoch) {
          throw new Failure(`the statement or keyset is for another epoch than ${epoch}`);
        }
        if (keyset.namespace !== statement.namespace) throw new Failure("keyset and statement namespaces differ");
        const fleets = fleetObjects(keyset);
        const proof = parseTlogProof(api.proof);
        if (row && BigInt(row.index) !== proof.index) throw new Failure("the listing and the proof disagree on the log index");
        if (BigInt(api.index) !== proof.index) throw new Failure("the API and the proof disagree on the log index");
        const cp = await openCheckpoint(proof.checkpoint, state.logKey);
        await checkAgainstCurrent(cp);
        await verifyInclusion(proof.index, cp.size, await leafHash(bundle), proof.hashes, cp.root);
        if (row && row.digest !== hex(digest)) throw new Failure("the epoch listing names another keyset digest");
        return { ok: true, epoch, index: proof.index, digest, keyset, fleets, cpSize: cp.size };
      } catch (e) {
        return { ok: false, epoch, reason: e instanceof Failure ? e.message : `unexpected error: ${e.message}` };
      }
    })();
    state.epochs.set(epoch, work);
    return work;
  }

  async function chainCheck(result) {
    const previous = result.keyset.previous;
    if (result.epoch === 1) {
      return previous === "0".repeat(64)
        ? { ok: true, text: "first epoch (previous = 64 zeros)" }
        : { ok: false, text: "epoch 1 must have previous = 64 zeros" };
    }
    const before = await verifyEpoch(result.epoch - 1, null);
    if (!before.ok) return { ok: null, text: `chain to epoch ${result.epoch - 1} not checked: that epoch failed`, before };
    return previous === hex(before.digest)
      ? { ok: true, text: `previous = SHA-256 of epoch ${result.epoch - 1}'s keyset`, before }
      : { ok: false, text: `previous does not name epoch ${result.epoch - 1}'s keyset: broken chain`, before };
  }

  function changes(before, after) {
    const old = new Map((before ? before.fleets : []).map((f) => [f.fleet_id, f]));
    const out = [];
    for (const f of after.fleets) {
      const o = old.get(f.fleet_id);
      if (!o) out.push({ kind: "added", text: `+ ${f.fleet_id} (${f.status})` });
      else {
        if (o.status !== f.status) out.push({ kind: f.status === "revoked" ? "revoked" : "status", text: `${f.fleet_id}: ${o.status} → ${f.status}` });
        if (o.public_key !== f.public_key || o.algorithm !== f.algorithm) out.push({ kind: "rekeyed", text: `${f.fleet_id}: new key` });
      }
    }
    const now = new Set(after.fleets.map((f) => f.fleet_id));
    for (const id of old.keys()) if (!now.has(id)) out.push({ kind: "removed", text: `− ${id}` });
    return out;
  }

  const when = (t) => (typeof t === "string" ? t.replace("T", " ").replace("Z", " UTC") : "?");

  async function fingerprint(publicKeyB64) {
    try {
      return "sha256:" + hex(await sha256(b64decode(publicKeyB64, "public key"))).slice(0, 32);
    } catch {
      return "(invalid key encoding)";
    }
  }

  async function fleetTable(fleets) {
    const body = el("tbody");
    for (const f of fleets) {
      const revoked = f.status === "revoked";
      body.append(el("tr", { class: revoked ? "revoked" : "" },
        el("td", { class: "fleet" }, f.fleet_id),
        el("td", {}, el("span", { class: `status status-${["active", "retired", "revoked"].includes(f.status) ? f.status : "other"}` }, f.status)),
        el("td", {}, f.algorithm),
        el("td", { class: "dates" }, when(f.not_before), el("br"), when(f.not_after)),
        el("td", { class: "fp" }, el("code", {}, await fingerprint(f.public_key)),
          el("br"), el("code", { class: "pub" }, f.public_key))));
    }
    return el("table", { class: "fleets" },
      el("thead", {}, el("tr", {}, el("th", {}, "Fleet"), el("th", {}, "Status"), el("th", {}, "Algorithm"),
        el("th", {}, "Valid from / until"), el("th", {}, "Public key (SHA-256 fingerprint, base64)"))),
      body);
  }

  async function renderEpoch(row) {
    const card = el("article", { class: "epoch", "data-epoch": row.epoch, "aria-busy": "true" },
      el("header", {}, el("h3", {}, `Epoch ${row.epoch}`), badge(null, "verifying…")));
    $("epochs").append(card);
    const result = await verifyEpoch(row.epoch, row);
    const head = card.querySelector("header");
    head.replaceChildren(el("h3", {}, `Epoch ${row.epoch}`));
    card.removeAttribute("aria-busy");
    if (!result.ok) {
      card.classList.add("failed");
      card.dataset.verified = "false";
      head.append(badge(false, `FAILED: ${result.reason}`));
      card.append(el("p", { class: "meta" }, `Log index ${row.index}. Nothing from this epoch is shown because it did not verify.`));
      return false;
    }
    const chain = await chainCheck(result);
    if (chain.ok === false) {
      card.classList.add("failed");
      card.dataset.verified = "false";
      head.append(badge(false, `FAILED: ${chain.text}`));
    } else {
      card.dataset.verified = "true";
      head.append(badge(true, "verified in your browser"));
    }
    const ks = result.keyset;
    card.append(el("p", { class: "meta" },
      `Log index ${result.index} · issued ${when(ks.issued_at)} · expires ${when(ks.expires_at)}`));
    const diff = changes(chain.before && chain.before.ok ? chain.before : null, result);
    const list = el("ul", { class: "changes" });
    for (const c of diff) list.append(el("li", { class: `change ${c.kind}` }, c.text));
    if (!diff.length) list.append(el("li", { class: "change none" }, "no change"));
    const since = result.epoch === 1 ? "First epoch:" : chain.before && chain.before.ok ? `Changes since epoch ${result.epoch - 1}:` : "Changes (previous epoch unavailable):";
    card.append(el("div", { class: "changes-wrap" }, el("span", { class: "label" }, since), list));
    card.append(await fleetTable(result.fleets));
    card.append(el("p", { class: "digest" }, "Keyset SHA-256 ", el("code", {}, hex(result.digest)), " · ", chain.text,
      result.cpSize !== state.checkpoint.size ? ` · proven in checkpoint of size ${result.cpSize}` : ""));
    return chain.ok !== false;
  }

  // -- page flow -------------------------------------------------------------------------------
  const totals = { shown: 0, failed: 0 };

  function updateSummary(done) {
    const { shown, failed } = totals;
    const text = shown === 0
      ? "No epochs are logged yet."
      : failed
        ? `${shown} epoch${shown === 1 ? "" : "s"} shown, ${failed} FAILED verification in your browser.`
        : `${shown} epoch${shown === 1 ? "" : "s"} shown, all verified in your browser.`;
    setText("history-summary", text);
    const status = $("status");
    if (state.checkpointError) {
      status.className = "status fail";
      status.textContent = `The checkpoint did not verify against the log key: ${state.checkpointError}`;
    } else if (state.witnessError) {
      status.className = "status fail";
      status.textContent = `Clients refuse this checkpoint (witness policy of the trust root): ${state.witnessError}`;
    } else if (!done) {
      status.className = "status pending";
      status.textContent = "Verifying…";
    } else if (failed) {
      status.className = "status fail";
      status.textContent = `${failed} of ${shown} epochs FAILED verification. Do not trust this log until this is explained.`;
    } else {
      status.className = "status ok";
      status.textContent = shown === 0
        ? "Checkpoint verified in your browser against the log key below; no epochs are logged yet."
        : `Checkpoint and ${shown} epoch${shown === 1 ? "" : "s"} verified in your browser against the log key below.`;
    }
  }

  let nextBefore = null;

  // Marks the page as settled (<body data-audit-done="true">): every check started so far has ended.
  function settled() {
    document.body.dataset.auditDone = "true";
  }

  async function loadPage() {
    const more = $("more");
    more.hidden = true;
    delete document.body.dataset.auditDone;
    updateSummary(false);
    const query = `/api/v1/epochs?limit=${PAGE}` + (nextBefore !== null ? `&before=${nextBefore}` : "");
    let page;
    try {
      page = await fetchJSON(query);
      if (!Array.isArray(page.epochs)) throw new Failure("epoch listing: malformed");
    } catch (e) {
      $("epochs").append(el("p", { class: "error" }, `Cannot list epochs: ${e.message}`));
      totals.failed += 1;
      updateSummary(true);
      settled();
      return;
    }
    const rows = page.epochs.filter((r) => r && Number.isSafeInteger(r.epoch) && r.epoch > 0 && Number.isSafeInteger(r.index));
    const results = [];
    for (const row of rows) results.push(renderEpoch(row));
    for (const ok of await Promise.all(results)) {
      totals.shown += 1;
      if (!ok) totals.failed += 1;
    }
    nextBefore = Number.isSafeInteger(page.next_before) ? page.next_before : null;
    more.hidden = nextBefore === null;
    updateSummary(true);
    settled();
  }

  function pinnedKey() {
    const m = /^#log-key=(.+)$/.exec(location.hash);
    if (!m) return null;
    try {
      return decodeURIComponent(m[1]).trim();
    } catch {
      return null;
    }
  }

  async function main() {
    setText("cmd-url", location.origin);
    $("pin-button").addEventListener("click", () => {
      const v = $("pin-input").value.trim();
      if (v) location.hash = "log-key=" + encodeURIComponent(v);
    });
    window.addEventListener("hashchange", () => location.reload());
    $("more").addEventListener("click", () => loadPage());

    let info;
    try {
      info = await fetchJSON("/api/v1/info");
    } catch (e) {
      state.checkpointError = e.message;
      setBadge("checkpoint-badge", false, `FAILED: ${e.message}`);
      updateSummary(true);
      settled();
      return;
    }
    const pinned = pinnedKey();
    const vkeyText = pinned || info.log_vkey;
    setText("origin", typeof info.origin === "string" ? info.origin : "?");
    setText("log-vkey", typeof vkeyText === "string" ? vkeyText : "?");
    setText("key-source", pinned
      ? "pinned by you in the URL (#log-key=…): the server's copy is not used"
      : "served by this distributor (/api/v1/info): compare it with your trust root");
    if (pinned) $("pin-input").value = pinned;
    setText("trust-root-version", Number.isSafeInteger(info.trust_root_version) ? `version ${info.trust_root_version}` : "none configured");
    try {
      state.logKey = await parseVkey(vkeyText, 0x01, "log key");
      if (typeof info.origin === "string" && info.origin !== state.logKey.name) {
        throw new Failure(`the log key is for ${state.logKey.name}, not this log (${info.origin})`);
      }
      const cp = await openCheckpoint(await fetchBytes("/checkpoint", MAX_NOTE), state.logKey);
      state.checkpoint = cp;
      setText("cp-size", `${cp.size} entries`);
      setText("cp-root", b64encode(cp.root));
      setBadge("checkpoint-badge", true, "log signature verified in your browser");
      const now = BigInt(Math.floor(Date.now() / 1000));
      let policy = null;
      let policyError = null;
      try {
        policy = await witnessPolicy(info);
      } catch (e) {
        policyError = e.message;
      }
      if (policyError) {
        setText("cp-fresh", `not verified: ${policyError}`);
      } else if (policy) {
        // K > 0: witnesses vouch for the time; the log's own freshness cosignature is not needed.
        try {
          const w = await witnessedTime(cp, policy, now);
          setText("cp-fresh", `witnessed: ${w.counted} of ${policy.keys.length} witnesses cosigned within the last ` +
            `${policy.maxAge} s (${policy.threshold} required); the newest time ${policy.threshold} of them vouch for is ` +
            `${when(isoTime(w.time))} (${now - w.time} s ago)`);
        } catch (e) {
          state.witnessError = e instanceof Failure ? e.message : `unexpected error: ${e.message}`;
          $("cp-fresh").replaceChildren(badge(false, "FAILED"), ` clients refuse this checkpoint: ${state.witnessError}`);
        }
      } else {
        try {
          const freshKey = await parseVkey(info.freshness_vkey, 0x04, "freshness key");
          const t = await verifyFreshness(cp, freshKey);
          setText("cp-fresh", `cosigned ${when(isoTime(t))} (${now - t} s ago) by the log's freshness key`);
        } catch (e) {
          setText("cp-fresh", `not verified: ${e.message}`);
        }
      }
    } catch (e) {
      state.checkpointError = e instanceof Failure ? e.message : `unexpected error: ${e.message}`;
      setBadge("checkpoint-badge", false, `FAILED: ${state.checkpointError}`);
      setText("cp-size", "—");
      setText("cp-root", "—");
      setText("cp-fresh", "—");
    }
    await loadPage();
  }

  document.addEventListener("DOMContentLoaded", () => {
    main().catch((e) => {
      const status = $("status");
      status.className = "status fail";
      status.textContent = `The page failed: ${e.message}`;
      settled();
    });
  });
})();
