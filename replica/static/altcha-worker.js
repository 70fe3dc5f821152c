// Proof-of-work solver for ALTCHA v2 challenges, run in a Web Worker.
//
// The key derivation mirrors the PyPI `altcha` 2.x library (altcha/v2.py) that the replica's server
// verifies with:
//   password = nonce bytes + counter as a big-endian uint32
//   "SHA-256" / "SHA-384" / "SHA-512" (any non-PBKDF2 name): digest(salt + password), then digest of
//     the previous digest, `cost` rounds in all (at least one), truncated to keyLength bytes;
//     only the exact names "SHA-384" and "SHA-512" pick those digests, anything else is SHA-256.
//   "PBKDF2/..." : PBKDF2-HMAC(password, salt, iterations = cost, keyLength bytes); only the exact
//     names "PBKDF2/SHA-384" and "PBKDF2/SHA-512" pick those digests, anything else is SHA-256.
// The solution is the first counter whose derived key, in hex, starts with keyPrefix.

"use strict";

const SHA_DIGESTS = { "SHA-512": "SHA-512", "SHA-384": "SHA-384" };
const PBKDF2_DIGESTS = { "PBKDF2/SHA-512": "SHA-512", "PBKDF2/SHA-384": "SHA-384" };

function hexToBytes(hex) {
  if (typeof hex !== "string" || hex.length % 2 !== 0 || /[^0-9a-fA-F]/.test(hex)) {
    throw new Error("malformed hex");
  }
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.substr(i * 2, 2), 16);
  return out;
}

function bytesToHex(bytes) {
  let hex = "";
  for (const b of bytes) hex += b.toString(16).padStart(2, "0");
  return hex;
}

function concat(a, b) {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

function password(nonce, counter) {
  const buf = new Uint8Array(nonce.length + 4);
  buf.set(nonce, 0);
  new DataView(buf.buffer).setUint32(nonce.length, counter, false);
  return buf;
}

async function deriveSha(params, salt, pass) {
  const hash = SHA_DIGESTS[params.algorithm] || "SHA-256";
  const rounds = Math.max(1, params.cost | 0);
  let data = concat(salt, pass);
  let derived = null;
  for (let i = 0; i < rounds; i++) {
    derived = new Uint8Array(await crypto.subtle.digest(hash, data));
    data = derived;
  }
  return derived.slice(0, params.keyLength);
}

async function derivePbkdf2(params, salt, pass) {
  const hash = PBKDF2_DIGESTS[params.algorithm] || "SHA-256";
  const key = await crypto.subtle.importKey("raw", pass, "PBKDF2", false, ["deriveBits"]);
  const bits = await crypto.subtle.deriveBits(
    { name: "PBKDF2", hash, salt, iterations: params.cost },
    key,
    params.keyLength * 8,
  );
  return new Uint8Array(bits);
}

function pickDerivation(algorithm) {
  const alg = String(algorithm).toUpperCase();
  if (alg.startsWith("PBKDF2")) return derivePbkdf2;
  if (alg === "ARGON2ID" || alg === "SCRYPT") throw new Error(`unsupported algorithm ${algorithm}`);
  return deriveSha;
}

async function solve(raw, timeoutMs) {
  const params = {
    algorithm: raw.algorithm,
    cost: raw.cost,
    keyLength: raw.keyLength ?? 32,
    keyPrefix: String(raw.keyPrefix ?? "00").toLowerCase(),
  };
  const derive = pickDerivation(params.algorithm);
  const nonce = hexToBytes(raw.nonce);
  const salt = hexToBytes(raw.salt);
  const started = performance.now();
  for (let counter = 0; counter <= 0xffffffff; counter++) {
    if (performance.now() - started > timeoutMs) return null;
    const key = await derive(params, salt, password(nonce, counter));
    const hex = bytesToHex(key);
    if (hex.startsWith(params.keyPrefix)) {
      return { counter, derivedKey: hex, time: Math.round(performance.now() - started) };
    }
  }
  return null;
}

self.onmessage = async (event) => {
  const { parameters, timeoutMs } = event.data;
  try {
    const solution = await solve(parameters, timeoutMs || 90000);
    self.postMessage({ solution });
  } catch (err) {
    self.postMessage({ error: String(err && err.message ? err.message : err) });
  }
};
