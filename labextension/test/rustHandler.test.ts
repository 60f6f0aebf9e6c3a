import { language, StringStream } from '@codemirror/language';
import { EditorState } from '@codemirror/state';
import { describe, expect, it } from 'vitest';

import {
  isRustHandlerSource,
  rustHandlerHighlighting,
  rustHandlerLanguage,
  rustHandlerParser
} from '../src/rustHandler';

/** Runs the stream parser over `text`; returns [token text, style] per line. */
function tokenize(text: string): [string, string | null][][] {
  const state = rustHandlerParser.startState!(4);
  return text.split('\n').map(line => {
    const tokens: [string, string | null][] = [];
    if (!line) {
      rustHandlerParser.blankLine!(state, 4);
      return tokens;
    }
    const stream = new StringStream(line, 4, 4);
    while (!stream.eol()) {
      const style = rustHandlerParser.token(stream, state);
      const word = stream.current();
      if (word.trim()) {
        tokens.push([word, style]);
      }
      stream.start = stream.pos;
    }
    return tokens;
  });
}

const CELL = `%%rust_handler POST /users/{id} --workers 2
use rust_edge_gateway_sdk::prelude::*;

fn handle(req: Request) -> Response {
    // a comment
    Response::ok(json!({"id": 42}))
}`;

describe('isRustHandlerSource', () => {
  it('recognises the magic on the first line only', () => {
    expect(isRustHandlerSource('%%rust_handler GET /hello')).toBe(true);
    expect(isRustHandlerSource('%%rust_handler')).toBe(true);
    expect(isRustHandlerSource('%%rust_handlers GET /x')).toBe(false);
    expect(isRustHandlerSource('%%bash')).toBe(false);
    expect(isRustHandlerSource('# %%rust_handler')).toBe(false);
  });
});

describe('rustHandlerParser', () => {
  it('styles the magic line as a command, method, path and options', () => {
    const [magic] = tokenize(CELL);
    expect(magic).toEqual([
      ['%%rust_handler', 'meta'],
      ['POST', 'keyword'],
      ['/users/{id}', 'string'],
      ['--workers', 'attribute'],
      ['2', 'number']
    ]);
  });

  it('styles the body as Rust, across blank lines', () => {
    const lines = tokenize(CELL);
    expect(lines[1]).toContainEqual(['use', 'keyword']);
    expect(lines[3]).toContainEqual(['fn', 'keyword']);
    expect(lines[3]).toContainEqual(['handle', 'def']);
    expect(lines[4]).toEqual([['// a comment', 'comment']]);
    expect(
      lines[5].some(
        ([word, style]) => style === 'string' && word.includes('id')
      )
    ).toBe(true);
    expect(lines[5]).toContainEqual(['42', 'number']);
  });

  it('does not treat an upper-case word after line 1 as the method', () => {
    const lines = tokenize('%%rust_handler GET /x\nconst MAX: u32 = 1;');
    expect(lines[1]).toContainEqual(['const', 'keyword']);
    expect(lines[1]).not.toContainEqual(['MAX', 'keyword']);
  });
});

describe('rustHandlerHighlighting', () => {
  function stateFor(doc: string) {
    return EditorState.create({
      doc,
      extensions: [rustHandlerHighlighting(doc)]
    });
  }

  it('applies the Rust handler language to a handler cell', () => {
    expect(stateFor(CELL).facet(language)).toBe(rustHandlerLanguage);
  });

  it('leaves other cells alone', () => {
    expect(stateFor('print("hi")').facet(language)).toBeNull();
  });

  it('switches when the first line is edited into or out of the magic', () => {
    let state = stateFor('fn main() {}');
    expect(state.facet(language)).toBeNull();
    state = state.update({
      changes: { from: 0, insert: '%%rust_handler GET /x\n' }
    }).state;
    expect(state.facet(language)).toBe(rustHandlerLanguage);
    state = state.update({ changes: { from: 0, to: 2 } }).state;
    expect(state.facet(language)).toBeNull();
  });

  it('follows a document that arrives after the editor was created', () => {
    let state = stateFor('');
    state = state.update({ changes: { from: 0, insert: CELL } }).state;
    expect(state.facet(language)).toBe(rustHandlerLanguage);
  });

  it('wins over a language set by the editor itself', async () => {
    const { StreamLanguage } = await import('@codemirror/language');
    const other = StreamLanguage.define({
      name: 'other',
      token: s => (s.skipToEnd(), null)
    });
    const state = EditorState.create({
      doc: CELL,
      extensions: [other, rustHandlerHighlighting(CELL)]
    });
    expect(state.facet(language)).toBe(rustHandlerLanguage);
  });
});
