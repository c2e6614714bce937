// Encodes every sentence of the npm package nlp-corpus with the independent GPT-2 encoder of
// the npm package gpt-3-encoder and writes one JSON object per line: {"text": ..., "ids": [...]}.
// The tokenizer test compares llmc's ids with these.
//   node scripts/encode_corpus.mjs OUT.jsonl
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const encoder = require('gpt-3-encoder');
const out = process.argv[2];
if (!out) {
  console.error('usage: node scripts/encode_corpus.mjs OUT.jsonl');
  process.exit(2);
}
const gptDir = path.dirname(require.resolve('gpt-3-encoder'));
const builds = path.join(gptDir, '..', 'nlp-corpus', 'builds');
const files = fs.readdirSync(builds).filter((f) => f.endsWith('.json')).sort();
const extra = [
  'Hello world', ' leading space', 'trailing space ', 'two  spaces', 'tab\tand\nnewline\n\n',
  "it's they're we've I'm you'll he'd", 'numbers 12345 and 3.14159', 'emoji 😀🎉 and 中文 and العربية',
  'café naïve résumé', '   ', '', '\u00a0non-breaking\u00a0space', "'s's't",
];
const lines = [];
let count = 0;
for (const text of extra) {
  lines.push(JSON.stringify({ text, ids: encoder.encode(text) }));
}
for (const f of files) {
  const sentences = JSON.parse(fs.readFileSync(path.join(builds, f), 'utf8'));
  for (const text of sentences) {
    if (typeof text !== 'string') continue;
    lines.push(JSON.stringify({ text, ids: encoder.encode(text) }));
    count += 1;
  }
}
fs.writeFileSync(out, lines.join('\n') + '\n');
console.error(`encoded ${count} nlp-corpus sentences + ${extra.length} extra strings -> ${out}`);
