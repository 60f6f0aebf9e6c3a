/**
 * The edgebook JupyterLab extension: the endpoints model, the sidebar with its commands,
 * and Rust highlighting for `%%rust_handler` cells.
 */
import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette, Notification } from '@jupyterlab/apputils';
import {
  EditorExtensionRegistry,
  IEditorExtensionRegistry,
  IEditorLanguageRegistry
} from '@jupyterlab/codemirror';
import { INotebookTracker } from '@jupyterlab/notebook';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { ITranslator, nullTranslator } from '@jupyterlab/translation';
import {
  CommandToolbarButton,
  LabIcon,
  launchIcon,
  refreshIcon,
  SidePanel
} from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';

import { RequestBuilder } from './builder';
import { registerCommands } from './commands';
import { h, setText, StatusRegion } from './dom';
import { markCellDiagnostics } from './diagnostics';
import { EndpointList } from './endpoints';
import { EndpointsModel } from './endpointsModel';
import { APIError } from './handler';
import { rustHandlerHighlighting } from './rustHandler';
import {
  CommandIDs,
  ConnectionStatus,
  DEFAULT_SETTINGS,
  DIAGNOSTICS_PLUGIN_ID,
  EDITOR_PLUGIN_ID,
  IEndpointsModel,
  ISidebarSettings,
  MODEL_PLUGIN_ID,
  PANEL_ID,
  PLUGIN_ID
} from './tokens';

export { samePath } from './commands';

const ICON_SVG = `<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">
  <g class="jp-icon3" fill="#616161">
    <path d="M13 2 4 14h6l-1 8 9-12h-6l1-8z"/>
  </g>
</svg>`;

export const edgebookIcon = new LabIcon({
  name: 'edgebook:bolt',
  svgstr: ICON_SVG
});

/** The user's locale for numbers: the language pack's, else the browser's. */
function userLocale(translator: ITranslator): string | undefined {
  const code = translator.languageCode;
  return code && code !== 'default' ? code.replace(/_/g, '-') : undefined;
}

const modelPlugin: JupyterFrontEndPlugin<IEndpointsModel> = {
  id: MODEL_PLUGIN_ID,
  description: 'The edgebook endpoints: listings, actions and change signals.',
  autoStart: true,
  provides: IEndpointsModel,
  optional: [ITranslator],
  activate: (
    app: JupyterFrontEnd,
    translator: ITranslator | null
  ): IEndpointsModel => {
    const trans = (translator ?? nullTranslator).load('edgebook');
    return new EndpointsModel({
      events: app.serviceManager.events,
      describeError: error =>
        error instanceof APIError && error.status === 404
          ? trans.__(
              'The edgebook server extension is not enabled in this Jupyter server.'
            )
          : trans.__('Cannot list endpoints: %1', (error as Error).message)
    });
  }
};

const sidebar: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description:
    'A sidebar listing edgebook endpoints with their actions and a request builder.',
  autoStart: true,
  requires: [IEndpointsModel],
  optional: [
    ITranslator,
    ILayoutRestorer,
    INotebookTracker,
    ICommandPalette,
    ISettingRegistry,
    IEditorLanguageRegistry
  ],
  activate: (
    app: JupyterFrontEnd,
    model: IEndpointsModel,
    translator: ITranslator | null,
    restorer: ILayoutRestorer | null,
    tracker: INotebookTracker | null,
    palette: ICommandPalette | null,
    settingRegistry: ISettingRegistry | null,
    languages: IEditorLanguageRegistry | null
  ) => {
    translator = translator ?? nullTranslator;
    const trans = translator.load('edgebook');
    const locale = userLocale(translator);
    let settings: ISidebarSettings = { ...DEFAULT_SETTINGS };
    const status = new StatusRegion();
    const notify = (message: string) =>
      Notification.success(message, {
        autoClose: settings.notificationTimeout
      });

    const list = new EndpointList({
      model,
      commands: app.commands,
      trans,
      status,
      locale,
      notify
    });
    const builder = new RequestBuilder({
      trans,
      locale,
      historyLimit: () => settings.historyLimit,
      onSent: () => void model.refresh(),
      status
    });
    const panel = new SidePanel({ translator });
    panel.id = PANEL_ID;
    panel.addClass('eb-Sidebar');
    panel.title.icon = edgebookIcon;
    panel.title.caption = trans.__('Edgebook endpoints');
    panel.node.setAttribute('role', 'region');
    panel.node.setAttribute('aria-label', trans.__('Edgebook endpoints'));
    const heading = new Widget({
      node: h('h2', { class: 'eb-PanelTitle' }, trans.__('Edgebook'))
    });
    panel.header.addWidget(heading);
    const connection = h('span', { class: 'eb-Connection' });
    const showStatus = (_: unknown, value: ConnectionStatus) => {
      const words: Record<ConnectionStatus, string> = {
        connecting: trans.__('connecting\u2026'),
        live: trans.__('live'),
        polling: trans.__('polling'),
        offline: trans.__('offline')
      };
      setText(connection, words[value]);
      connection.dataset.status = value;
      connection.title =
        value === 'live'
          ? trans.__('Changes arrive over Jupyter Server\u2019s event bus')
          : value === 'polling'
            ? trans.__(
                'Listing every %1 s',
                String(settings.pollInterval / 1000)
              )
            : '';
    };
    showStatus(model, model.status);
    model.statusChanged.connect(showStatus);
    panel.toolbar.addItem('connection', new Widget({ node: connection }));
    panel.toolbar.addItem(
      'refresh',
      new CommandToolbarButton({
        commands: app.commands,
        id: CommandIDs.refresh,
        icon: refreshIcon,
        label: ''
      })
    );
    panel.toolbar.addItem(
      'admin',
      new CommandToolbarButton({
        commands: app.commands,
        id: CommandIDs.openAdmin,
        icon: launchIcon,
        label: ''
      })
    );
    panel.addWidget(list);
    panel.addWidget(builder);
    panel.node.append(status.node);
    panel.disposed.connect(() => status.dispose());

    registerCommands({
      app,
      model,
      trans,
      panel,
      list,
      builder,
      settings: () => settings,
      palette,
      tracker,
      languages,
      locale
    });

    app.shell.add(panel, 'left', { rank: 600 });
    restorer?.add(panel, PANEL_ID);

    if (settingRegistry) {
      const apply = (loaded: ISettingRegistry.ISettings) => {
        settings = {
          ...DEFAULT_SETTINGS,
          ...(loaded.composite as Partial<ISidebarSettings>)
        };
        model.pollInterval = settings.pollInterval;
        model.eventsTimeout = settings.eventsTimeout;
        showStatus(model, model.status);
      };
      settingRegistry
        .load(PLUGIN_ID)
        .then(loaded => {
          apply(loaded);
          loaded.changed.connect(apply);
        })
        .catch(reason =>
          console.warn(`edgebook: settings not loaded: ${reason}`)
        );
    }
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

const diagnostics: JupyterFrontEndPlugin<void> = {
  id: DIAGNOSTICS_PLUGIN_ID,
  description:
    'Marks a failed %%rust_handler build\u2019s diagnostics on the cell\u2019s own lines.',
  autoStart: true,
  requires: [INotebookTracker],
  activate: (app: JupyterFrontEnd, tracker: INotebookTracker) =>
    markCellDiagnostics(tracker)
};

export default [modelPlugin, sidebar, highlighting, diagnostics];
