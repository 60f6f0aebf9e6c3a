/**
 * Rust highlighting for `%%rust_handler` cells in JupyterLab's CodeMirror 6 editor.
 *
 * JupyterLab picks a cell's language from the kernel (IPython), so a cell magic's body is
 * highlighted as Python. This editor extension watches the first line: when it starts with
 * `%%rust_handler`, a higher-precedence language takes over whose first line is the magic
 * (command, method, path, options) and whose remaining lines go to the Rust stream parser.
 */
import {
  language as languageFacet,
  StreamLanguage,
  StreamParser
} from '@codemirror/language';
import type { StringStream } from '@codemirror/language';
import { rust } from '@codemirror/legacy-modes/mode/rust';
import { Compartment, EditorState, Extension, Prec } from '@codemirror/state';

/** The cell magic whose body is Rust. */
export const MAGIC = '%%rust_handler';

/** Whether a cell whose first line is `text` is a Rust handler cell (as IPython sees it). */
export function isRustHandlerSource(text: string): boolean {
  return /^%%rust_handler(\s|$)/.test(text);
}

/** State of the combined parser: the line number and the Rust parser's own state. */
interface IHandlerState {
  line: number;
  inner: unknown;
}

const rustParser = rust as StreamParser<unknown>;

function magicLineToken(stream: StringStream): string | null {
  if (stream.eatSpace()) {
    return null;
  }
  if (stream.match(MAGIC)) {
    return 'meta';
  }
  if (stream.match(/^--?[A-Za-z][\w-]*/)) {
    return 'attribute';
  }
  if (stream.match(/^\d+(\.\d+)?\b/)) {
    return 'number';
  }
  if (stream.match(/^[A-Z]+\b/)) {
    return 'keyword';
  }
  if (stream.match(/^\/\S*/)) {
    return 'string';
  }
  if (stream.match(/^"[^"]*"?/) || stream.match(/^'[^']*'?/)) {
    return 'string';
  }
  stream.match(/^\S+/);
  return null;
}

/** A stream parser: line 1 is the magic line, everything after it is Rust. */
export const rustHandlerParser: StreamParser<IHandlerState> = {
  name: 'rust',
  startState(indentUnit: number): IHandlerState {
    return {
      line: 0,
      inner: rustParser.startState ? rustParser.startState(indentUnit) : {}
    };
  },
  copyState(state: IHandlerState): IHandlerState {
    const inner = rustParser.copyState
      ? rustParser.copyState(state.inner)
      : { ...(state.inner as object) };
    return { line: state.line, inner };
  },
  blankLine(state: IHandlerState, indentUnit: number): void {
    state.line += 1;
    if (state.line > 1 && rustParser.blankLine) {
      rustParser.blankLine(state.inner, indentUnit);
    }
  },
  token(stream: StringStream, state: IHandlerState): string | null {
    if (stream.sol()) {
      state.line += 1;
    }
    if (state.line <= 1) {
      return magicLineToken(stream);
    }
    return rustParser.token(stream, state.inner);
  },
  indent(state: IHandlerState, textAfter: string, context) {
    if (state.line < 1 || !rustParser.indent) {
      return null;
    }
    return rustParser.indent(state.inner, textAfter, context);
  },
  languageData: rustParser.languageData
};

/** The language applied to Rust handler cells. */
export const rustHandlerLanguage = StreamLanguage.define(rustHandlerParser);

/** The extension a handler cell's editor gets (one object, so it can be recognised). */
const ACTIVE: Extension = Prec.highest(rustHandlerLanguage);
const INACTIVE: Extension = [];

function firstLine(state: EditorState): string {
  return state.doc.line(1).text;
}

/**
 * The editor extension: starts with the right language for `initialText` and switches
 * whenever an edit (typing, or the document arriving from the shared model) turns the first
 * line into, or out of, a `%%rust_handler` line.
 */
export function rustHandlerHighlighting(initialText: string): Extension {
  const compartment = new Compartment();
  const switcher = EditorState.transactionExtender.of(tr => {
    if (!tr.docChanged) {
      return null;
    }
    const active = compartment.get(tr.startState) === ACTIVE;
    const wanted = isRustHandlerSource(tr.newDoc.line(1).text);
    if (active === wanted) {
      return null;
    }
    return { effects: compartment.reconfigure(wanted ? ACTIVE : INACTIVE) };
  });
  const initial = isRustHandlerSource(initialText.split('\n', 1)[0])
    ? ACTIVE
    : INACTIVE;
  return [compartment.of(initial), switcher];
}

/** Whether the editor state currently highlights as a Rust handler. */
export function isHighlightedAsHandler(state: EditorState): boolean {
  return (
    state.facet(languageFacet) === rustHandlerLanguage &&
    isRustHandlerSource(firstLine(state))
  );
}
