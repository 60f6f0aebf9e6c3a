/**
 * A failed `%%rust_handler` build's diagnostics, marked on the offending lines of the
 * cell's editor.
 *
 * The kernel puts them in the cell's output under `DIAGNOSTICS_MIME`; whenever a code
 * cell's outputs change, its editor gets the diagnostics found there (none after a re-run
 * that succeeds, since running clears the outputs), and editing the cell clears them: the
 * marks describe the source that was built, not the one being typed.
 */
import { Diagnostic, lintGutter, setDiagnostics } from '@codemirror/lint';
import { StateEffect, Text } from '@codemirror/state';
import type { EditorView } from '@codemirror/view';
import type { Cell, ICodeCellModel } from '@jupyterlab/cells';
import type { CodeMirrorEditor } from '@jupyterlab/codemirror';
import type { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';

import { DIAGNOSTICS_MIME, ICellDiagnostic, ICellDiagnostics } from './tokens';

/** The diagnostics in a cell's outputs (the last bundle that has any), or []. */
export function findDiagnostics(
  outputs: Iterable<{ data: Record<string, unknown> }>
): ICellDiagnostic[] {
  let found: ICellDiagnostic[] = [];
  for (const output of outputs) {
    const payload = output.data[DIAGNOSTICS_MIME] as
      ICellDiagnostics | undefined;
    if (payload && Array.isArray(payload.diagnostics)) {
      found = payload.diagnostics;
    }
  }
  return found;
}

function severity(level: string): Diagnostic['severity'] {
  if (level.startsWith('error')) {
    return 'error';
  }
  return level === 'warning' ? 'warning' : 'info';
}

/** Offset of a 1-based line and character column in `doc`, kept inside the document. */
function offset(doc: Text, line: number, column: number): number {
  const at = doc.line(Math.min(Math.max(line, 1), doc.lines));
  return at.from + Math.min(Math.max(column - 1, 0), at.length);
}

/** The cell's diagnostics as CodeMirror ones; an empty range covers its line's rest. */
export function toEditorDiagnostics(
  doc: Text,
  marks: readonly ICellDiagnostic[]
): Diagnostic[] {
  return marks.map(mark => {
    const from = offset(doc, mark.line, mark.column);
    let to = offset(doc, mark.end_line, mark.end_column);
    if (to <= from) {
      to = doc.lineAt(from).to;
    }
    return {
      from,
      to: Math.max(to, from),
      severity: severity(mark.level),
      source: mark.code ? `rustc ${mark.code}` : 'rustc',
      message: mark.message
    };
  });
}

/** Keeps one code cell's editor in step with the diagnostics in its outputs. */
function watchCell(cell: Cell, marked: WeakSet<EditorView>): void {
  const model = cell.model as ICodeCellModel;
  const view = () =>
    (cell.editor as CodeMirrorEditor | null)?.editor as EditorView | undefined;
  const show = (marks: readonly ICellDiagnostic[]) => {
    const editor = view();
    if (!editor || (marks.length === 0 && !marked.has(editor))) {
      return;
    }
    const spec = setDiagnostics(
      editor.state,
      toEditorDiagnostics(editor.state.doc, marks)
    );
    if (marks.length > 0 && !marked.has(editor)) {
      marked.add(editor);
      const effects = spec.effects ? [spec.effects].flat() : [];
      spec.effects = [...effects, StateEffect.appendConfig.of(lintGutter())];
    }
    editor.dispatch(spec);
  };
  const fromOutputs = () => {
    const outputs = [];
    for (let i = 0; i < model.outputs.length; i++) {
      outputs.push(model.outputs.get(i));
    }
    show(findDiagnostics(outputs));
  };
  model.outputs.changed.connect(fromOutputs);
  model.sharedModel.changed.connect((_, change) => {
    if (change.sourceChange) {
      // Typing reaches the shared model inside the editor's own update, where the
      // editor takes no new transaction: clear once that update is over.
      queueMicrotask(() => show([]));
    }
  });
  void cell.ready.then(fromOutputs);
}

/** Watches every code cell of every notebook `tracker` opens. */
export function markCellDiagnostics(tracker: INotebookTracker): void {
  const marked = new WeakSet<EditorView>();
  const watched = new WeakSet<Cell>();
  const watchNotebook = (panel: NotebookPanel) => {
    const scan = () => {
      for (const cell of panel.content.widgets) {
        if (cell.model.type === 'code' && !watched.has(cell)) {
          watched.add(cell);
          watchCell(cell, marked);
        }
      }
    };
    panel.content.model?.cells.changed.connect(scan);
    panel.content.modelChanged.connect(scan);
    void panel.revealed.then(scan);
  };
  tracker.widgetAdded.connect((_, panel) => watchNotebook(panel));
  tracker.forEach(watchNotebook);
}
