// Decodes hex items with the portal's cbor.js into a neutral form test_browser.py compares.
(async ([hexes]) => {
  const { decode } = await import('/portal/static/cbor.js');
  const neutral = (v) => {
    if (typeof v === 'number' && Number.isInteger(v)) return { int: String(v) };
    if (typeof v === 'bigint') return { int: v.toString() };
    if (typeof v === 'number') return { float: Number.isNaN(v) ? 'nan' : String(v) };
    if (typeof v === 'string') return { text: v };
    if (v instanceof Uint8Array) return { bytes: Array.from(v, b => b.toString(16).padStart(2, '0')).join('') };
    if (Array.isArray(v)) return { array: v.map(neutral) };
    if (v instanceof Map) return { map: Array.from(v, ([k, x]) => [neutral(k), neutral(x)]) };
    if (v !== null && typeof v === 'object' && 'tag' in v) return { tag: String(v.tag), value: neutral(v.value) };
    return { simple: String(v) };
  };
  return hexes.map(h => {
    const bytes = Uint8Array.from(h.match(/../g) || [], x => parseInt(x, 16));
    try { return neutral(decode(bytes)); } catch (e) { return { error: e.constructor.name + ': ' + e.message }; }
  });
})
