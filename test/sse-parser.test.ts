import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createSseParser } from '../src/providers/sse.js';
import type { SseEvent } from '../src/providers/types.js';

function parseChunks(chunks: readonly string[]): { events: SseEvent[]; rest: string } {
  const events: SseEvent[] = [];
  const parser = createSseParser((e) => events.push(e));
  for (const chunk of chunks) parser.push(chunk);
  const rest = parser.end();
  return { events, rest };
}

/** Deterministic PRNG (mulberry32) so a failure can be replayed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function randomSplit(text: string, random: () => number): string[] {
  const chunks: string[] = [];
  let pos = 0;
  while (pos < text.length) {
    // Mostly tiny pieces (to split CRLFs and field names), sometimes empty or large ones.
    const r = random();
    const size = r < 0.1 ? 0 : r < 0.8 ? 1 + Math.floor(random() * 4) : 1 + Math.floor(random() * 40);
    chunks.push(text.slice(pos, pos + size));
    pos += size;
  }
  return chunks;
}

const MIXED_STREAM =
  ': ping\n\n' +
  'event: message_start\r\ndata: {"type":"message_start"}\r\n\r\n' +
  'data: line one\rdata: line two\r\r' +
  'data:no-space\ndata:  two spaces\n\n' +
  'id: 7\nretry: 1000\nevent: x\ndata\n\n' +
  '\n' +
  'event: ping\r\n: comment inside\r\ndata: {"a":"b\\"c"}\r\n\r\n' +
  'data: [DONE]\n\n' +
  'data: unterminated';

describe('SSE parser', () => {
  it('parses events, fields, comments and stray blank lines of a mixed stream', () => {
    const { events, rest } = parseChunks([MIXED_STREAM]);
    assert.deepEqual(
      events.map((e) => [e.event, e.data]),
      [
        [undefined, ''],
        ['message_start', '{"type":"message_start"}'],
        [undefined, 'line one\nline two'],
        [undefined, 'no-space\n two spaces'],
        ['x', ''],
        [undefined, ''],
        ['ping', '{"a":"b\\"c"}'],
        [undefined, '[DONE]'],
      ],
    );
    assert.equal(events[0]?.raw, ': ping\n\n');
    assert.equal(events[1]?.raw, 'event: message_start\r\ndata: {"type":"message_start"}\r\n\r\n');
    assert.equal(events[2]?.raw, 'data: line one\rdata: line two\r\r');
    assert.equal(events[5]?.raw, '\n');
    assert.equal(rest, 'data: unterminated');
    assert.equal(events.map((e) => e.raw).join('') + rest, MIXED_STREAM);
  });

  it('gives identical events and raws for random chunk splits, and the raws rebuild the input', () => {
    const whole = parseChunks([MIXED_STREAM]);
    const random = prng(0x5eed);
    for (let round = 0; round < 500; round++) {
      const chunks = randomSplit(MIXED_STREAM, random);
      const split = parseChunks(chunks);
      assert.deepEqual(split.events, whole.events, `split ${JSON.stringify(chunks)}`);
      assert.equal(split.rest, whole.rest);
      assert.equal(split.events.map((e) => e.raw).join('') + split.rest, MIXED_STREAM);
    }
  });

  it('rebuilds random CR/LF-heavy input exactly for random splits', () => {
    const random = prng(42);
    const alphabet = ['\r', '\n', '\r\n', 'data: x', 'event: e', ': c', 'data:', ':', 'é', '😀'];
    for (let round = 0; round < 300; round++) {
      let text = '';
      const length = Math.floor(random() * 40);
      for (let i = 0; i < length; i++) text += alphabet[Math.floor(random() * alphabet.length)] ?? '';
      const whole = parseChunks([text]);
      const split = parseChunks(randomSplit(text, random));
      assert.deepEqual(split.events, whole.events, `input ${JSON.stringify(text)}`);
      assert.equal(split.rest, whole.rest);
      assert.equal(split.events.map((e) => e.raw).join('') + split.rest, text);
    }
  });

  it('keeps a CRLF split between chunks inside one event', () => {
    const { events, rest } = parseChunks(['data: a\r', '\n\r', '\ndata: b\r', '\n', '\r\n']);
    assert.deepEqual(
      events.map((e) => e.raw),
      ['data: a\r\n\r\n', 'data: b\r\n\r\n'],
    );
    assert.deepEqual(
      events.map((e) => e.data),
      ['a', 'b'],
    );
    assert.equal(rest, '');
  });

  it('treats a lone CR at the very end as a line end when the stream ends', () => {
    const { events, rest } = parseChunks(['data: a\r\r']);
    assert.equal(events.length, 1);
    assert.equal(events[0]?.raw, 'data: a\r\r');
    assert.equal(rest, '');
  });

  it('emits a comment-only block as an event with empty data and no name', () => {
    const { events } = parseChunks([': keep-alive\r\n\r\n']);
    assert.deepEqual(events, [{ event: undefined, data: '', raw: ': keep-alive\r\n\r\n' }]);
  });

  it('joins multiple data lines with a newline and drops only one leading space', () => {
    const { events } = parseChunks(['data:  a\ndata: b\ndata:\ndata: c\n\n']);
    assert.equal(events[0]?.data, ' a\nb\n\nc');
  });

  it('does not emit an event that never got its blank line, and returns its text from end()', () => {
    const events: SseEvent[] = [];
    const parser = createSseParser((e) => events.push(e));
    parser.push('event: a\ndata: 1\n');
    assert.equal(events.length, 0);
    assert.equal(parser.end(), 'event: a\ndata: 1\n');
    assert.equal(events.length, 0);
  });

  it('ignores a leading BOM for parsing but keeps it in raw', () => {
    const { events } = parseChunks(['\uFEFF', 'event: a\ndata: 1\n\n']);
    assert.equal(events[0]?.event, 'a');
    assert.equal(events[0]?.raw, '\uFEFFevent: a\ndata: 1\n\n');
  });

  it('handles a long stream in small chunks in linear time', () => {
    const event = 'data: {"choices":[{"delta":{"content":"hello world"}}]}\n\n';
    const text = event.repeat(20_000);
    const chunks: string[] = [];
    for (let i = 0; i < text.length; i += 7) chunks.push(text.slice(i, i + 7));
    const started = performance.now();
    let count = 0;
    let bytes = 0;
    const parser = createSseParser((e) => {
      count++;
      bytes += e.raw.length;
    });
    for (const chunk of chunks) parser.push(chunk);
    assert.equal(parser.end(), '');
    assert.equal(count, 20_000);
    assert.equal(bytes, text.length);
    assert.ok(performance.now() - started < 2000, 'parsing took too long');
  });

  it('handles one very large event fed in many chunks', () => {
    const big = 'x'.repeat(2_000_000);
    const text = `data: ${big}\n\n`;
    const chunks: string[] = [];
    for (let i = 0; i < text.length; i += 1000) chunks.push(text.slice(i, i + 1000));
    const started = performance.now();
    const { events } = parseChunks(chunks);
    assert.equal(events.length, 1);
    assert.equal(events[0]?.data.length, big.length);
    assert.equal(events[0]?.raw, text);
    assert.ok(performance.now() - started < 2000, 'parsing took too long');
  });
});
