/**
 * The edgebook JupyterLab extension: the endpoints sidebar and Rust highlighting for
 * `%%rust_handler` cells.
 */
import {
  ILabShell,
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { MainAreaWidget, Notification } from '@jupyterlab/apputils';
import { EditorExtensionRegistry, IEditorExtensionRegistry } from '@jupyterlab/codemirror';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { LabIcon, listIcon, fileIcon } from '@jupyterlab/ui-components';
import { Panel } from '@lumino/widgets';

import { RequestBuilder } from './builder';
import { EndpointList } from './endpoints';
import { IEndpointView } from './model';
import { rustHandlerHighlighting } from './rustHandler';
import { EDITOR_PLUGIN_ID, PANEL_ID, PLUGIN_ID } from './tokens';
import { LogView, SourceView } from './views';

const ICON_SVG = `<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">
  <g class="jp-icon3" fill="#616161">
    <path d="M13 2 4 14h6l-1 8 9-12h-6l1-8z"/>
  </g>
</svg>`;

export const edgebookIcon = new LabIcon({ name: 'edgebook:bolt', svgstr: ICON_SVG });

/** Whether two notebook paths name the same file (one may be absolute, the other relative). */
export function samePath(a: string, b: string): boolean {
  const clean = (p: string) => p.replace(/\\/g, '/').replace(/^(\.\/)+/, '').replace(/^\/+/, '');
  const x = clean(a);
  const y = clean(b);
  return x === y || x.endsWith('/' + y) || y.endsWith('/' + x);
}

/** Opens (or finds) the notebook an endpoint came from and selects its cell. */
async function jumpToOrigin(
  app: JupyterFrontEnd,
  tracker: INotebookTracker | null,
  view: IEndpointView
): Promise<void> {
  const notebook = view.origin?.notebook;
  const cellId = view.origin?.cell_id;
  if (!notebook) {
    return;
  }
  let panel: NotebookPanel | null | undefined = tracker?.find(p => samePath(p.context.path, notebook));
  if (!panel && !notebook.startsWith('/')) {
    try {
      const opened = await app.commands.execute('docmanager:open', { path: notebook });
      panel = opened instanceof NotebookPanel ? opened : null;
    } catch {
      panel = null;
    }
  }
  if (!panel) {
    Notification.info(`Open ${notebook} to jump to the cell of ${view.name}.`, { autoClose: 4000 });
    return;
  }
  await panel.context.ready;
  app.shell.activateById(panel.id);
  const index = cellId ? panel.content.widgets.findIndex(cell => cell.model.id === cellId) : -1;
  if (index < 0) {
    Notification.info(`The cell of ${view.name} is no longer in ${notebook}.`, { autoClose: 4000 });
    return;
  }
  panel.content.activeCellIndex = index;
  await panel.content.scrollToItem(index, 'center');
  panel.content.activeCell?.node.focus();
}

const sidebar: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'A sidebar listing edgebook endpoints with their actions and a request builder.',
  autoStart: true,
  optional: [ILayoutRestorer, INotebookTracker, ILabShell],
  activate: (
    app: JupyterFrontEnd,
    restorer: ILayoutRestorer | null,
    tracker: INotebookTracker | null
  ) => {
    const openInMain = (id: string, label: string, content: LogView | SourceView, icon: LabIcon) => {
      const existing = Array.from(app.shell.widgets('main')).find(w => w.id === id);
      if (existing) {
        app.shell.activateById(id);
        return false;
      }
      const widget = new MainAreaWidget({ content });
      widget.id = id;
      widget.title.label = label;
      widget.title.icon = icon;
      widget.title.closable = true;
      app.shell.add(widget, 'main', { mode: 'split-right' });
      app.shell.activateById(id);
      return true;
    };
    const jump = (view: IEndpointView) => void jumpToOrigin(app, tracker, view);
    const logViews = new Map<string, LogView>();
    const openLogs = (view: IEndpointView) => {
      const content = new LogView({ name: view.name });
      content.disposed.connect(() => {
        if (logViews.get(view.name) === content) {
          logViews.delete(view.name);
        }
      });
      if (openInMain(`edgebook-logs-${view.name}`, `Logs: ${view.name}`, content, listIcon)) {
        logViews.set(view.name, content);
      } else {
        content.dispose();
      }
    };
    const builder = new RequestBuilder();
    const list = new EndpointList({
      actions: {
        openLogs,
        openSource: view => {
          const content = new SourceView(view, jump);
          if (!openInMain(`edgebook-source-${view.name}`, `Source: ${view.name}`, content, fileIcon)) {
            content.dispose();
          }
        },
        jumpToOrigin: jump,
        deleting: async (name, phase) => {
          const logs = logViews.get(name);
          if (!logs) {
            return;
          }
          if (phase === 'pending') {
            await logs.pause();
          } else if (phase === 'gone') {
            logs.markGone();
          } else {
            logs.resume();
          }
        },
        tryRequest: view => {
          builder.load({ method: view.method, path: view.path });
          builder.node.scrollIntoView({ block: 'nearest' });
        }
      }
    });
    const panel = new Panel();
    panel.id = PANEL_ID;
    panel.addClass('eb-Sidebar');
    panel.title.icon = edgebookIcon;
    panel.title.caption = 'Edgebook endpoints';
    panel.node.setAttribute('role', 'region');
    panel.node.setAttribute('aria-label', 'Edgebook endpoints');
    panel.addWidget(list);
    panel.addWidget(builder);
    app.shell.add(panel, 'left', { rank: 600 });
    restorer?.add(panel, PANEL_ID);
  }
};

const highlighting: JupyterFrontEndPlugin<void> = {
  id: EDITOR_PLUGIN_ID,
  description: 'Highlights the body of %%rust_handler cells as Rust.',
  autoStart: true,
  requires: [IEditorExtensionRegistry],
  activate: (app: JupyterFrontEnd, extensions: IEditorExtensionRegistry) => {
    extensions.addExtension({
      name: 'edgebook:rust-handler',
      factory: options =>
        /markdown|gfm/i.test(options.model.mimeType)
          ? null
          : EditorExtensionRegistry.createImmutableExtension(
              rustHandlerHighlighting(options.model.sharedModel.getSource())
            )
    });
  }
};

export default [sidebar, highlighting];
