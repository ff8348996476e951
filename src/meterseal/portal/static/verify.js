// In-browser verification of a meterseal bill: the customer's browser checks, itself,
//   1. the billing service's ES256 signature on the bill (COSE_Sign1, WebCrypto ECDSA P-256),
//   2. the metrology authority's ES256 countersignature (RFC 9338 version 2) on that bill,
//   3. that a reading is on the bill: its RFC 9162 inclusion proof (SHA-256) leads to the
//      Merkle root the signed bill carries,
//   4. the bill's place in the bill log: its inclusion proof leads to the root of a tree
//      head the billing key signed, and that head is consistent with the one this browser
//      kept (localStorage) from earlier visits.
// Keys are pinned on first use from the deployment's published key set (/v1/keys). The
// server's data is only input here: nothing it says about validity is believed.

import { decode, encode, hex, Tagged } from "./cbor.js";

const ES256 = -7;
const BILL_TYPE = "application/meterseal-bill+cbor";
const HEAD_TYPE = "application/meterseal-bill-log-head+cbor";
const CONTENT_TYPE = 3;
const ALG = 1;
const KID = 4;
const COUNTERSIGNATURE = 11;
const EMPTY_ROOT = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"; // SHA-256("")
const PINNED_KEYS = "meterseal.pinned-keys";
const KEPT_HEAD = "meterseal.bill-log-head";

export class Failure extends Error {}
export class Unverifiable extends Error {}

export function fromBase64(text) {
  const binary = atob(text);
  return Uint8Array.from(binary, (c) => c.charCodeAt(0));
}

export function fromHex(text) {
  if (!/^([0-9a-f]{2})*$/.test(text)) throw new Failure("not hex");
  return Uint8Array.from(text.match(/../g) || [], (h) => parseInt(h, 16));
}

function equal(a, b) {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

async function sha256(data) {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", data));
}

export function leafHash(data) {
  return sha256(concat(Uint8Array.of(0), data));
}

function nodeHash(left, right) {
  return sha256(concat(Uint8Array.of(1), left, right));
}

const half = (n) => Math.floor(n / 2);
const odd = (n) => n % 2 === 1;

const hashes = (...items) => items.every((h) => h instanceof Uint8Array && h.length === 32);

// RFC 9162 section 2.1.3.2: does `path` lead from leaf `index` of `size` to `root`?
export async function verifyInclusion(leaf, index, size, path, root) {
  if (!(index >= 0 && index < size) || !hashes(leaf, root, ...path)) return false;
  let fn = index;
  let sn = size - 1;
  let r = leaf;
  for (const p of path) {
    if (sn === 0) return false;
    if (odd(fn) || fn === sn) {
      r = await nodeHash(p, r);
      while (!odd(fn) && fn !== 0) {
        fn = half(fn);
        sn = half(sn);
      }
    } else {
      r = await nodeHash(r, p);
    }
    fn = half(fn);
    sn = half(sn);
  }
  return sn === 0 && equal(r, root);
}

// RFC 9162 section 2.1.4.2: do the first `first` leaves of the tree with `secondRoot`
// have `firstRoot`?
export async function verifyConsistency(first, second, proof, firstRoot, secondRoot) {
  if (first < 0 || first > second) return false;
  if (first === second) {
    const empty = first > 0 || hex(firstRoot) === EMPTY_ROOT; // the empty tree has one root
    return proof.length === 0 && equal(firstRoot, secondRoot) && empty;
  }
  if (first === 0 || proof.length === 0) return false; // nothing to be consistent with
  if (!hashes(firstRoot, secondRoot, ...proof)) return false;
  let path = proof;
  if ((first & (first - 1)) === 0 && first < 2 ** 31) path = [firstRoot, ...proof];
  let fn = first - 1;
  let sn = second - 1;
  while (odd(fn)) {
    fn = half(fn);
    sn = half(sn);
  }
  let fr = path[0];
  let sr = path[0];
  for (const c of path.slice(1)) {
    if (sn === 0) return false;
    if (odd(fn) || fn === sn) {
      fr = await nodeHash(c, fr);
      sr = await nodeHash(c, sr);
      while (!odd(fn) && fn !== 0) {
        fn = half(fn);
        sn = half(sn);
      }
    } else {
      sr = await nodeHash(sr, c);
    }
    fn = half(fn);
    sn = half(sn);
  }
  return sn === 0 && equal(fr, firstRoot) && equal(sr, secondRoot);
}

// A tagged COSE_Sign1 (tag 18) with its protected header decoded.
export function parseSign1(bytes, what) {
  let item;
  try {
    item = decode(bytes);
  } catch (e) {
    throw new Failure(`the ${what} is not valid CBOR (${e.message})`);
  }
  if (!(item instanceof Tagged) || item.tag !== 18 || !Array.isArray(item.value) || item.value.length !== 4) {
    throw new Failure(`the ${what} is not a COSE_Sign1`);
  }
  const [protectedBytes, unprotected, payload, signature] = item.value;
  if (!(protectedBytes instanceof Uint8Array) || !(unprotected instanceof Map)) {
    throw new Failure(`the ${what} has malformed headers`);
  }
  if (!(payload instanceof Uint8Array) || !(signature instanceof Uint8Array)) {
    throw new Failure(`the ${what} has no payload or signature bytes`);
  }
  const headers = protectedBytes.length ? decode(protectedBytes) : new Map();
  if (!(headers instanceof Map)) throw new Failure(`the ${what}'s protected header is not a map`);
  return { protectedBytes, headers, unprotected, payload, signature };
}

async function importKey(spki) {
  return crypto.subtle.importKey("spki", spki, { name: "ECDSA", namedCurve: "P-256" }, false, ["verify"]);
}

async function es256(key, signature, data) {
  if (signature.length !== 64) return false; // COSE carries r||s, 32 bytes each
  return crypto.subtle.verify({ name: "ECDSA", hash: "SHA-256" }, key, signature, data);
}

function requireEs256(headers, what) {
  const alg = headers.get(ALG);
  if (alg !== ES256) {
    throw new Unverifiable(
      `the ${what} is signed with COSE algorithm ${String(alg)}, which WebCrypto does not offer: ` +
        "it cannot be verified in your browser (verify it with meterseal verify-bill)",
    );
  }
}

// Sig_structure of a COSE_Sign1 (RFC 9052 section 4.4), no external AAD.
function toBeSigned(body) {
  return encode(["Signature1", body.protectedBytes, new Uint8Array(0), body.payload]);
}

// Countersign_structure, version 2 (RFC 9338 section 3.3), over the body's signature.
function counterToBeSigned(body, counterProtected) {
  return encode([
    "CounterSignatureV2",
    body.protectedBytes,
    counterProtected,
    new Uint8Array(0),
    body.payload,
    [body.signature],
  ]);
}

async function getJson(path) {
  const response = await fetch(path, { credentials: "same-origin", headers: { Accept: "application/json" } });
  if (!response.ok) throw new Failure(`the server answered ${response.status} for ${path}`);
  return response.json();
}

function stored(name) {
  try {
    return JSON.parse(localStorage.getItem(name) || "null");
  } catch {
    return null;
  }
}

// The deployment's keys, pinned on first use; a changed key set is a failure, never a re-pin.
export async function pinnedKeys(note) {
  const published = await getJson("/v1/keys");
  if (published.keys.length === 0 && stored(PINNED_KEYS) === null) {
    throw new Unverifiable("this deployment publishes no public keys to check its bills with");
  }
  const served = JSON.stringify(published.keys);
  let pinned = stored(PINNED_KEYS);
  if (pinned === null) {
    pinned = { keys: published.keys, pinned_at: new Date().toISOString() };
    localStorage.setItem(PINNED_KEYS, JSON.stringify(pinned));
    note(`keys pinned now, on first use, from this deployment's published key set`);
  } else if (JSON.stringify(pinned.keys) !== served) {
    throw new Failure(
      `the deployment's published keys are not the ones your browser pinned on ${pinned.pinned_at}`,
    );
  } else {
    note(`keys are the ones your browser pinned on ${pinned.pinned_at}`);
  }
  const byRole = {};
  for (const k of pinned.keys) {
    if (k.alg !== "ES256") throw new Unverifiable(`the ${k.role} key is ${k.alg}, not ES256`);
    byRole[k.role] = { kid: fromHex(k.kid), key: await importKey(fromBase64(k.spki)) };
  }
  if (!byRole.billing || !byRole.authority) throw new Failure("the key set lacks the billing or authority key");
  return byRole;
}

function decodeBill(payload) {
  const bill = decode(payload);
  if (!(bill instanceof Map)) throw new Failure("the signed bill's payload is not a bill");
  const evidence = bill.get("evidence");
  if (!(evidence instanceof Map)) throw new Failure("the signed bill carries no evidence");
  return {
    id: bill.get("bill"),
    customer: bill.get("customer"),
    total: bill.get("total"),
    currency: bill.get("currency"),
    packets: evidence.get("packets"),
    root: evidence.get("merkle_root"),
  };
}

function countersignatures(unprotected) {
  const value = unprotected.get(COUNTERSIGNATURE);
  if (value === undefined) return [];
  if (!Array.isArray(value) || value.length === 0) throw new Failure("malformed countersignature");
  return Array.isArray(value[0]) ? value : [value];
}

// Every check, in order; `step(text)` reports each one that passed. Returns the summary.
export async function verifyBill({ billId, total, reading, step }) {
  if (!window.isSecureContext || !crypto.subtle) {
    throw new Unverifiable("this page is not in a secure context (HTTPS or localhost): the browser offers no WebCrypto");
  }
  const keys = await pinnedKeys(step);
  const id = encodeURIComponent(billId);
  const view = await getJson(`/v1/bills/${id}`);
  const signedBill = fromBase64(view.signed_bill);
  const body = parseSign1(signedBill, "bill");
  requireEs256(body.headers, "bill");
  if (body.headers.get(CONTENT_TYPE) !== BILL_TYPE) throw new Failure("the signed object is not a bill");
  if (!(await es256(keys.billing.key, body.signature, toBeSigned(body)))) {
    throw new Failure("the billing service's signature on the bill does not verify");
  }
  const bill = decodeBill(body.payload);
  if (bill.id !== billId) throw new Failure(`the signed bill is ${bill.id}, not ${billId}`);
  if (bill.total !== total) throw new Failure(`the page shows a total of ${total}, the signed bill says ${bill.total}`);
  step(`the billing service signed bill ${bill.id} (total ${bill.total} ${bill.currency})`);

  if (!view.countersigned_bill) {
    throw new Unverifiable("the metrology authority has not countersigned this bill yet (no clean audit)");
  }
  const counter = parseSign1(fromBase64(view.countersigned_bill), "countersigned bill");
  for (const field of ["protectedBytes", "payload", "signature"]) {
    if (!equal(counter[field], body[field])) throw new Failure("the countersigned bill is not the signed bill");
  }
  const theirs = countersignatures(counter.unprotected).find(
    (c) => c[1] instanceof Map && c[1].get(KID) instanceof Uint8Array && equal(c[1].get(KID), keys.authority.kid),
  );
  if (!theirs) throw new Failure("no countersignature by the metrology authority's pinned key");
  const [counterProtected, , counterSignature] = theirs;
  requireEs256(decode(counterProtected), "countersignature");
  if (!(await es256(keys.authority.key, counterSignature, counterToBeSigned(body, counterProtected)))) {
    throw new Failure("the metrology authority's countersignature does not verify");
  }
  step("the metrology authority countersigned this exact signed bill");

  const path = `/v1/bills/${id}/readings/${encodeURIComponent(reading.meter)}/${reading.counter}/proof`;
  const proof = await getJson(path);
  if (proof.bill_id !== billId) throw new Failure(`the reading proof is for bill ${proof.bill_id}`);
  if (proof.tree_size !== bill.packets) {
    throw new Failure(`the reading proof is for ${proof.tree_size} readings, the bill has ${bill.packets}`);
  }
  const readingLeaf = await leafHash(fromBase64(proof.signed_original));
  const readingPath = proof.path.map(fromHex);
  if (!(await verifyInclusion(readingLeaf, proof.index, proof.tree_size, readingPath, bill.root))) {
    throw new Failure(`reading ${reading.meter}:${reading.counter}: its inclusion proof does not lead to the bill's signed Merkle root`);
  }
  step(`reading ${reading.meter}:${reading.counter} is reading ${proof.index + 1} of ${bill.packets} on the bill`);

  const inclusion = await getJson(`/v1/bill-log/inclusion/${id}`);
  const headBody = parseSign1(fromBase64(inclusion.signed_head), "bill-log tree head");
  requireEs256(headBody.headers, "bill-log tree head");
  if (headBody.headers.get(CONTENT_TYPE) !== HEAD_TYPE) throw new Failure("the signed head is not a bill-log tree head");
  if (!(await es256(keys.billing.key, headBody.signature, toBeSigned(headBody)))) {
    throw new Failure("the billing service's signature on the bill log's tree head does not verify");
  }
  const head = decode(headBody.payload);
  const size = head.get("size");
  const root = head.get("root");
  if (size !== inclusion.tree_size || !(root instanceof Uint8Array)) throw new Failure("the tree head does not match the inclusion proof");
  const logLeaf = await leafHash(signedBill);
  if (!(await verifyInclusion(logLeaf, inclusion.log_index, size, inclusion.proof.map(fromHex), root))) {
    throw new Failure("the bill's inclusion proof does not lead to the bill log's signed root");
  }
  step(`the bill is entry ${inclusion.log_index + 1} of ${size} in the bill log`);

  const kept = stored(KEPT_HEAD);
  if (kept !== null) {
    const keptRoot = fromHex(kept.root);
    const [small, large, smallRoot, largeRoot] =
      kept.size <= size ? [kept.size, size, keptRoot, root] : [size, kept.size, root, keptRoot];
    const proofLog =
      small === large ? { proof: [] } : await getJson(`/v1/bill-log/consistency?first=${small}&second=${large}`);
    if (!(await verifyConsistency(small, large, proofLog.proof.map(fromHex), smallRoot, largeRoot))) {
      throw new Failure(`the bill log is not consistent with the tree head your browser kept (size ${kept.size}): it was rewritten, or the kept head was altered`);
    }
    step(`the bill log is consistent with the tree head your browser kept (size ${kept.size})`);
  } else {
    step("first visit: this browser now keeps the bill log's tree head to check the next ones against");
  }
  if (kept === null || size >= kept.size) {
    localStorage.setItem(KEPT_HEAD, JSON.stringify({ size, root: hex(root), seen_at: new Date().toISOString() }));
  }
  return bill;
}

// The page: run on load with the first reading, again when a reading's button is pressed.
function start(section) {
  const status = section.querySelector("[data-status]");
  const checks = section.querySelector("[data-checks]");
  const run = async (reading) => {
    status.className = "status pending";
    status.textContent = "checking in your browser…";
    checks.replaceChildren();
    const step = (text) => {
      const item = document.createElement("li");
      item.textContent = text;
      checks.append(item);
    };
    try {
      await verifyBill({ billId: section.dataset.billId, total: section.dataset.total, reading, step });
      status.className = "status verified";
      status.textContent = "✔ verified in your browser";
    } catch (error) {
      const unverifiable = error instanceof Unverifiable;
      status.className = unverifiable ? "status unverifiable" : "status failed";
      status.textContent = (unverifiable ? "not verified: " : "✘ verification failed: ") + error.message;
    }
  };
  for (const button of document.querySelectorAll("button[data-counter]")) {
    button.addEventListener("click", () => run({ meter: button.dataset.meter, counter: Number(button.dataset.counter) }));
  }
  const first = document.querySelector("button[data-counter]");
  if (first) run({ meter: first.dataset.meter, counter: Number(first.dataset.counter) });
  else {
    status.className = "status unverifiable";
    status.textContent = "not verified: this bill has no reading to check";
  }
}

const section = typeof document !== "undefined" && document.getElementById("verify");
if (section) start(section);
