/**
 * The `edgebook:*` commands: every endpoint action, for the palette, keyboard shortcuts,
 * context menus, row buttons and other extensions alike.
 */
import { JupyterFrontEnd } from '@jupyterlab/application';
import {
  Clipboard,
  Dialog,
  ICommandPalette,
  InputDialog,
  MainAreaWidget,
  Notification,
  showDialog
} from '@jupyterlab/apputils';
import { IEditorLanguageRegistry } from '@jupyterlab/codemirror';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { TranslationBundle } from '@jupyterlab/translation';
import {
  copyIcon,
  deleteIcon,
  fileIcon,
  LabIcon,
  launchIcon,
  linkIcon,
  listIcon,
  refreshIcon,
  runIcon,
  stopIcon,
  tableRowsIcon,
  terminalIcon
} from '@jupyterlab/ui-components';
import { ReadonlyPartialJSONObject } from '@lumino/coreutils';
import { Widget } from '@lumino/widgets';

import { RequestBuilder } from './builder';
import { EndpointList } from './endpoints';
import { adminPageUrl } from './handler';
import { RecentRequestsView } from './requests';
import {
  curlCommand,
  endpointUrl,
  IEndpointView,
  SERVING_STATES
} from './model';
import {
  CommandIDs,
  ENDPOINT_COMMANDS,
  EndpointAction,
  IEndpointsModel,
  ISidebarSettings
} from './tokens';
import { LogView, SourceView } from './views';

export interface ICommandsOptions {
  app: JupyterFrontEnd;
  model: IEndpointsModel;
  trans: TranslationBundle;
  /** The sidebar, and the two sections commands act on. */
  panel: Widget;
  list: EndpointList;
  builder: RequestBuilder;
  settings: () => ISidebarSettings;
  palette: ICommandPalette | null;
  tracker: INotebookTracker | null;
  languages: IEditorLanguageRegistry | null;
  /** The locale numbers are written in (the user's when undefined). */
  locale?: string;
}

const BUSY = new Set(['building', 'starting']);

/** Whether two notebook paths name the same file (one may be absolute, the other relative). */
export function samePath(a: string, b: string): boolean {
  const clean = (p: string) =>
    p
      .replace(/\\/g, '/')
      .replace(/^(\.\/)+/, '')
      .replace(/^\/+/, '');
  const x = clean(a);
  const y = clean(b);
  return x === y || x.endsWith('/' + y) || y.endsWith('/' + x);
}

/** Registers the commands, their palette entries and the rows' context menu. */
export function registerCommands(options: ICommandsOptions): void {
  const { app, model, trans, list, builder, palette } = options;
  const { commands } = app;
  const notify = (message: string) =>
    Notification.success(message, {
      autoClose: options.settings().notificationTimeout
    });

  /** The endpoint a command names: in its args, or the row under a context menu. */
  const known = (args: ReadonlyPartialJSONObject): IEndpointView | null => {
    let name = typeof args.name === 'string' ? args.name : null;
    if (!name && args.source === 'context-menu') {
      const row = app.contextMenuHitTest(node =>
        node.classList.contains('eb-Endpoint')
      );
      name = row?.dataset.name ?? null;
    }
    return name ? (model.views.get(name) ?? null) : null;
  };

  /**
   * As `known`; else the only endpoint; else asks which, offering the row that last had
   * the focus first.
   */
  const pick = async (
    args: ReadonlyPartialJSONObject
  ): Promise<IEndpointView | null> => {
    const view = known(args);
    if (view || typeof args.name === 'string') {
      if (!view) {
        Notification.warning(
          trans.__('There is no endpoint named %1.', String(args.name))
        );
      }
      return view;
    }
    const names = [...model.views.keys()];
    if (names.length <= 1) {
      if (!names.length) {
        Notification.info(trans.__('There are no endpoints yet.'));
      }
      return names.length ? (model.views.get(names[0]) ?? null) : null;
    }
    const choice = await InputDialog.getItem({
      title: trans.__('Which endpoint?'),
      items: names,
      current: Math.max(0, names.indexOf(list.current ?? ''))
    });
    return choice.button.accept && choice.value
      ? (model.views.get(choice.value) ?? null)
      : null;
  };

  /** "Start get_hello" in a row, "Start" in a context menu, "Start Endpoint…" in the palette. */
  const labelFor =
    (withName: string, bare: string, palette: string) =>
    (args: ReadonlyPartialJSONObject) => {
      if (typeof args.name === 'string') {
        return trans.__(withName, args.name);
      }
      return args.source === 'context-menu'
        ? trans.__(bare)
        : trans.__(palette);
    };

  const addEndpointCommand = (
    id: string,
    spec: {
      label: (args: ReadonlyPartialJSONObject) => string;
      icon: LabIcon;
      enabled?: (view: IEndpointView) => boolean;
      run: (view: IEndpointView) => Promise<unknown> | unknown;
    }
  ) => {
    commands.addCommand(id, {
      label: spec.label,
      caption: spec.label,
      icon: spec.icon,
      isEnabled: args => {
        const view = known(args);
        return !view || !spec.enabled || spec.enabled(view);
      },
      execute: async args => {
        const view = await pick(args);
        if (view) {
          return spec.run(view);
        }
      }
    });
  };

  const act = async (
    view: IEndpointView,
    action: EndpointAction,
    failed: string
  ) => {
    try {
      await model.run(view.name, action);
    } catch (error) {
      Notification.error(trans.__(failed, view.name, (error as Error).message));
    }
  };

  addEndpointCommand(CommandIDs.start, {
    label: labelFor('Start %1', 'Start', 'Start Endpoint\u2026'),
    icon: runIcon,
    enabled: view => !SERVING_STATES.has(view.state) && !BUSY.has(view.state),
    run: view => act(view, 'start', 'Could not start %1: %2')
  });
  addEndpointCommand(CommandIDs.stop, {
    label: labelFor('Stop %1', 'Stop', 'Stop Endpoint\u2026'),
    icon: stopIcon,
    enabled: view => view.state !== 'stopped' && view.state !== 'created',
    run: view => act(view, 'stop', 'Could not stop %1: %2')
  });
  addEndpointCommand(CommandIDs.restart, {
    label: labelFor('Restart %1', 'Restart', 'Restart Endpoint\u2026'),
    icon: refreshIcon,
    run: view => act(view, 'restart', 'Could not restart %1: %2')
  });
  addEndpointCommand(CommandIDs.remove, {
    label: labelFor('Delete %1', 'Delete', 'Delete Endpoint\u2026'),
    icon: deleteIcon,
    run: async view => {
      const result = await showDialog({
        title: trans.__('Delete %1?', view.name),
        body: trans.__(
          '%1 %2 stops serving and its revisions are removed. The notebook cell is kept.',
          view.method,
          view.path
        ),
        buttons: [
          Dialog.cancelButton({ label: trans.__('Cancel') }),
          Dialog.warnButton({ label: trans.__('Delete') })
        ]
      });
      if (!result.button.accept) {
        return;
      }
      try {
        await model.remove(view.name);
      } catch (error) {
        Notification.error(
          trans.__(
            'Could not delete %1: %2',
            view.name,
            (error as Error).message
          )
        );
      }
    }
  });

  const openInMain = (
    id: string,
    label: string,
    content: Widget,
    icon: LabIcon
  ) => {
    const existing = Array.from(app.shell.widgets('main')).find(
      w => w.id === id
    );
    if (existing) {
      content.dispose();
      app.shell.activateById(id);
      return existing;
    }
    const widget = new MainAreaWidget({ content });
    widget.id = id;
    widget.title.label = label;
    widget.title.icon = icon;
    widget.title.closable = true;
    app.shell.add(widget, 'main', { mode: 'split-right' });
    app.shell.activateById(id);
    return widget;
  };

  addEndpointCommand(CommandIDs.openLogs, {
    label: labelFor('Logs of %1', 'Open Logs', 'Open Endpoint Logs\u2026'),
    icon: listIcon,
    run: view =>
      openInMain(
        `edgebook-logs-${view.name}`,
        trans.__('Logs: %1', view.name),
        new LogView({
          name: view.name,
          model,
          trans,
          tail: () => options.settings().logTail,
          interval: () => options.settings().logInterval
        }),
        listIcon
      )
  });
  addEndpointCommand(CommandIDs.recentRequests, {
    label: labelFor(
      'Recent requests to %1',
      'Recent Requests',
      'Show Recent Endpoint Requests\u2026'
    ),
    icon: tableRowsIcon,
    run: view =>
      openInMain(
        `edgebook-requests-${view.name}`,
        trans.__('Requests: %1', view.name),
        new RecentRequestsView({
          name: view.name,
          model,
          trans,
          locale: options.locale,
          interval: () => options.settings().requestsInterval
        }),
        tableRowsIcon
      )
  });
  const jump = (view: IEndpointView) =>
    jumpToOrigin(app, options.tracker, trans, view);
  addEndpointCommand(CommandIDs.openSource, {
    label: labelFor(
      'Source of %1',
      'Open Source',
      'Open Endpoint Source\u2026'
    ),
    icon: fileIcon,
    run: view =>
      openInMain(
        `edgebook-source-${view.name}`,
        trans.__('Source: %1', view.name),
        new SourceView({
          view,
          trans,
          languages: options.languages,
          jumpToOrigin: jump
        }),
        fileIcon
      )
  });
  addEndpointCommand(CommandIDs.jumpToCell, {
    label: labelFor(
      'Go to the cell of %1',
      'Go to Cell',
      'Go to Endpoint Cell\u2026'
    ),
    icon: fileIcon,
    enabled: view => !!view.origin?.notebook,
    run: jump
  });
  addEndpointCommand(CommandIDs.tryRequest, {
    label: labelFor(
      'Try %1 in the request builder',
      'Try in Request Builder',
      'Try Endpoint\u2026'
    ),
    icon: terminalIcon,
    run: view => {
      app.shell.activateById(options.panel.id);
      builder.load({ method: view.method, path: view.path });
      builder.node.scrollIntoView({ block: 'nearest' });
    }
  });
  addEndpointCommand(CommandIDs.copyUrl, {
    label: labelFor('Copy URL of %1', 'Copy URL', 'Copy Endpoint URL\u2026'),
    icon: linkIcon,
    run: view => {
      Clipboard.copyToSystem(endpointUrl(view));
      notify(trans.__('Copied the URL of %1', view.name));
    }
  });
  addEndpointCommand(CommandIDs.copyCurl, {
    label: labelFor(
      'Copy %1 as curl',
      'Copy as curl',
      'Copy Endpoint as curl\u2026'
    ),
    icon: copyIcon,
    run: view => {
      Clipboard.copyToSystem(
        curlCommand({ method: view.method, url: endpointUrl(view) })
      );
      notify(trans.__('Copied %1 as a curl command', view.name));
    }
  });
  commands.addCommand(CommandIDs.refresh, {
    label: trans.__('Refresh Endpoints'),
    caption: trans.__('Refresh endpoints'),
    icon: refreshIcon,
    execute: () => model.refresh()
  });
  commands.addCommand(CommandIDs.openAdmin, {
    label: trans.__('Open the Admin Page'),
    caption: trans.__(
      'Open the gateway\u2019s admin page in a new browser tab (behind Jupyter\u2019s login)'
    ),
    icon: launchIcon,
    execute: () => {
      window.open(adminPageUrl(), '_blank', 'noopener');
    }
  });
  commands.addCommand(CommandIDs.focusPanel, {
    label: trans.__('Show Endpoints Panel'),
    caption: trans.__('Show the edgebook endpoints panel and focus it'),
    execute: () => {
      app.shell.activateById(options.panel.id);
      list.focusFirst();
    }
  });

  // Enabled states (Start on a running endpoint, ...) follow the listing in menus too.
  model.changed.connect(() => commands.notifyCommandChanged());

  const category = trans.__('Edgebook');
  const inPalette = [
    ...ENDPOINT_COMMANDS,
    CommandIDs.jumpToCell,
    CommandIDs.refresh,
    CommandIDs.openAdmin,
    CommandIDs.focusPanel
  ];
  for (const command of inPalette) {
    palette?.addItem({ command, category });
  }
  ENDPOINT_COMMANDS.forEach((command, rank) => {
    app.contextMenu.addItem({
      command,
      args: { source: 'context-menu' },
      selector: '.eb-Endpoint',
      rank
    });
  });
}

/** Opens (or finds) the notebook an endpoint came from and selects its cell. */
async function jumpToOrigin(
  app: JupyterFrontEnd,
  tracker: INotebookTracker | null,
  trans: TranslationBundle,
  view: IEndpointView
): Promise<void> {
  const notebook = view.origin?.notebook;
  const cellId = view.origin?.cell_id;
  if (!notebook) {
    return;
  }
  let panel: NotebookPanel | null | undefined = tracker?.find(p =>
    samePath(p.context.path, notebook)
  );
  if (!panel && !notebook.startsWith('/')) {
    try {
      const opened = await app.commands.execute('docmanager:open', {
        path: notebook
      });
      panel = opened instanceof NotebookPanel ? opened : null;
    } catch {
      panel = null;
    }
  }
  if (!panel) {
    Notification.info(
      trans.__('Open %1 to jump to the cell of %2.', notebook, view.name),
      {
        autoClose: 4000
      }
    );
    return;
  }
  await panel.context.ready;
  app.shell.activateById(panel.id);
  const index = cellId
    ? panel.content.widgets.findIndex(cell => cell.model.id === cellId)
    : -1;
  if (index < 0) {
    Notification.info(
      trans.__('The cell of %1 is no longer in %2.', view.name, notebook),
      {
        autoClose: 4000
      }
    );
    return;
  }
  panel.content.activeCellIndex = index;
  await panel.content.scrollToItem(index, 'center');
  panel.content.activeCell?.node.focus();
}
