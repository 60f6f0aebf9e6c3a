import { Text } from '@codemirror/state';
import { describe, expect, it } from 'vitest';

import { findDiagnostics, toEditorDiagnostics } from '../src/diagnostics';
import { DIAGNOSTICS_MIME, ICellDiagnostic } from '../src/tokens';

const CELL = Text.of([
  '%%rust_handler GET /p',
  'fn handle(req: Request) -> Response {',
  '    Response::ok(json!({"p": req.pathx}))',
  '}'
]);

const FIELD: ICellDiagnostic = {
  line: 3,
  column: 34,
  end_line: 3,
  end_column: 39,
  level: 'error',
  code: 'E0609',
  message: 'no field `pathx` on type `Request`: unknown field'
};

describe('cell diagnostics', () => {
  it('are found in the last output that carries them', () => {
    const outputs = [
      { data: { 'text/plain': 'deploying' } },
      {
        data: {
          'text/plain': 'GET /p: build failed',
          [DIAGNOSTICS_MIME]: {
            endpoint: 'get_p',
            state: 'build_failed',
            diagnostics: [FIELD]
          }
        }
      }
    ];
    expect(findDiagnostics(outputs)).toEqual([FIELD]);
    expect(findDiagnostics([{ data: { 'text/plain': 'ok' } }])).toEqual([]);
  });

  it('cover the offending characters of the cell line', () => {
    const [mark] = toEditorDiagnostics(CELL, [FIELD]);
    expect(CELL.sliceString(mark.from, mark.to)).toBe('pathx');
    expect(mark.severity).toBe('error');
    expect(mark.source).toBe('rustc E0609');
  });

  it('stay inside the document and never have an empty range', () => {
    const marks = toEditorDiagnostics(CELL, [
      { ...FIELD, line: 99, end_line: 99, level: 'warning', code: null },
      { ...FIELD, line: 2, column: 4, end_line: 2, end_column: 4 }
    ]);
    expect(CELL.sliceString(marks[0].from, marks[0].to)).toBe('');
    expect(marks[0].to).toBe(CELL.length);
    expect(marks[0].severity).toBe('warning');
    expect(CELL.sliceString(marks[1].from, marks[1].to)).toBe(
      'handle(req: Request) -> Response {'
    );
  });
});
