// Removes the compiled library and the built extension (the inputs stay).
import { rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = new URL('..', import.meta.url);
for (const path of [
  'lib',
  'tsconfig.tsbuildinfo',
  '../edgebook/labextension'
]) {
  rmSync(fileURLToPath(new URL(path, root)), { recursive: true, force: true });
}
