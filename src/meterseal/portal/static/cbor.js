// A strict CBOR (RFC 8949) decoder of the subset meterseal's signed objects use, and the
// small encoder the COSE to-be-signed structures need. No dependency, no build step.
//
// Decoding is strict, as the server's (meterseal.crypto.cose.loads_strict): one item, no
// trailing bytes, definite lengths only, no duplicate map keys, text that is valid UTF-8.
// Unsigned and negative integers come back as Numbers when they are safe integers and as
// BigInts beyond; byte strings as Uint8Array; maps as Map (keys compared by their encoding);
// tags as Tagged; false, true, null and undefined as themselves; floats as Numbers.

export class CborError extends Error {}

export class Tagged {
  constructor(tag, value) {
    this.tag = tag;
    this.value = value;
  }
}

const MAX_DEPTH = 64;
const utf8 = new TextDecoder("utf-8", { fatal: true });

export function decode(bytes) {
  if (!(bytes instanceof Uint8Array)) throw new CborError("CBOR input must be bytes");
  const reader = new Reader(bytes);
  const item = reader.item(0);
  if (reader.pos !== bytes.length) throw new CborError("trailing bytes after CBOR item");
  return item;
}

class Reader {
  constructor(bytes) {
    this.bytes = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.pos = 0;
  }

  take(n) {
    if (n > this.bytes.length - this.pos) throw new CborError("truncated CBOR");
    const start = this.pos;
    this.pos += n;
    return start;
  }

  // The argument of a head: a Number when safe, else a BigInt.
  argument(info) {
    if (info < 24) return info;
    if (info === 24) return this.bytes[this.take(1)];
    if (info === 25) return this.view.getUint16(this.take(2));
    if (info === 26) return this.view.getUint32(this.take(4));
    if (info === 27) {
      const big = this.view.getBigUint64(this.take(8));
      return big <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(big) : big;
    }
    if (info === 31) throw new CborError("indefinite lengths are not accepted");
    throw new CborError(`reserved additional information ${info}`);
  }

  length(info) {
    const n = this.argument(info);
    if (typeof n !== "number" || n > this.bytes.length - this.pos) {
      throw new CborError("truncated CBOR");
    }
    return n;
  }

  item(depth) {
    if (depth > MAX_DEPTH) throw new CborError("CBOR nested too deeply");
    const head = this.bytes[this.take(1)];
    const major = head >> 5;
    const info = head & 0x1f;
    switch (major) {
      case 0:
        return this.argument(info);
      case 1: {
        const n = this.argument(info);
        return typeof n === "number" ? -1 - n : -1n - n;
      }
      case 2: {
        const n = this.length(info);
        const start = this.take(n);
        return this.bytes.slice(start, start + n);
      }
      case 3: {
        const n = this.length(info);
        const start = this.take(n);
        try {
          return utf8.decode(this.bytes.subarray(start, start + n));
        } catch {
          throw new CborError("text is not valid UTF-8");
        }
      }
      case 4: {
        const n = this.length(info);
        const items = [];
        for (let i = 0; i < n; i++) items.push(this.item(depth + 1));
        return items;
      }
      case 5: {
        const n = this.length(info);
        const map = new Map();
        const seen = new Set();
        for (let i = 0; i < n; i++) {
          const keyStart = this.pos;
          const key = this.item(depth + 1);
          const encoded = hex(this.bytes.subarray(keyStart, this.pos));
          if (seen.has(encoded)) throw new CborError("duplicate map key");
          seen.add(encoded);
          map.set(key, this.item(depth + 1));
        }
        return map;
      }
      case 6:
        return new Tagged(this.argument(info), this.item(depth + 1));
      default:
        return this.simple(info);
    }
  }

  simple(info) {
    switch (info) {
      case 20:
        return false;
      case 21:
        return true;
      case 22:
        return null;
      case 23:
        return undefined;
      case 25:
        return half(this.view.getUint16(this.take(2)));
      case 26:
        return this.view.getFloat32(this.take(4));
      case 27:
        return this.view.getFloat64(this.take(8));
      case 31:
        throw new CborError("unexpected break");
      default:
        throw new CborError(`unsupported simple value ${info}`);
    }
  }
}

function half(bits) {
  const exponent = (bits >> 10) & 0x1f;
  const fraction = bits & 0x3ff;
  const sign = bits & 0x8000 ? -1 : 1;
  if (exponent === 0) return sign * fraction * 2 ** -24;
  if (exponent === 31) return fraction ? NaN : sign * Infinity;
  return sign * (1 + fraction / 1024) * 2 ** (exponent - 15);
}

export function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

// Encoding: text, byte strings, arrays and non-negative or negative safe integers; the
// shortest head form, as RFC 8949's core deterministic encoding (and cbor2) writes them.
export function encode(value) {
  const out = [];
  write(out, value);
  return new Uint8Array(out);
}

function writeHead(out, major, n) {
  const m = major << 5;
  if (n < 24) out.push(m | n);
  else if (n < 0x100) out.push(m | 24, n);
  else if (n < 0x10000) out.push(m | 25, n >> 8, n & 0xff);
  else if (n < 0x100000000) out.push(m | 26, (n >>> 24) & 0xff, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff);
  else throw new CborError("length too large to encode");
}

function write(out, value) {
  if (typeof value === "number" && Number.isInteger(value) && value >= 0) writeHead(out, 0, value);
  else if (typeof value === "number" && Number.isInteger(value)) writeHead(out, 1, -1 - value);
  else if (value instanceof Uint8Array) {
    writeHead(out, 2, value.length);
    for (const b of value) out.push(b);
  } else if (typeof value === "string") {
    const bytes = new TextEncoder().encode(value);
    writeHead(out, 3, bytes.length);
    for (const b of bytes) out.push(b);
  } else if (Array.isArray(value)) {
    writeHead(out, 4, value.length);
    for (const item of value) write(out, item);
  } else throw new CborError(`cannot encode ${typeof value}`);
}
