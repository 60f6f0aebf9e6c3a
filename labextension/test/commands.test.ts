// @vitest-environment jsdom
import { JupyterFrontEnd } from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';
import { nullTranslator } from '@jupyterlab/translation';
import { CommandRegistry } from '@lumino/commands';
import { Widget } from '@lumino/widgets';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

import { RequestBuilder } from '../src/builder';
import { registerCommands } from '../src/commands';
import { StatusRegion } from '../src/dom';
import { EndpointList } from '../src/endpoints';
import { EndpointsModel, IEndpointsClient } from '../src/endpointsModel';
import {
  CommandIDs,
  DEFAULT_SETTINGS,
  ENDPOINT_COMMANDS,
  EndpointAction,
  IEndpoint
} from '../src/tokens';

import { endpoint } from './fakes';

// The notebook package does not load under jsdom; these tests never open a notebook.
vi.mock('@jupyterlab/notebook', () => ({ NotebookPanel: class {} }));

const trans = nullTranslator.load('edgebook');

class FakeClient implements IEndpointsClient {
  endpoints = [endpoint('alpha')];
  acts: string[] = [];
  async list(): Promise<IEndpoint[]> {
    return this.endpoints.map(e => ({ ...e }));
  }
  async act(name: string, action: EndpointAction): Promise<void> {
    this.acts.push(`${action} ${name}`);
    this.endpoints = this.endpoints.map(e =>
      e.name === name
        ? { ...e, state: action === 'stop' ? 'stopped' : 'running' }
        : e
    );
  }
  async remove(): Promise<void> {}
}

describe('registerCommands', () => {
  let commands: CommandRegistry;
  let client: FakeClient;
  let model: EndpointsModel;
  let list: EndpointList;
  let palette: { command: string; category: string }[];
  let menu: { command: string; selector: string; args?: unknown }[];
  let panel: Widget;
  let activated: string[];

  beforeEach(async () => {
    commands = new CommandRegistry();
    client = new FakeClient();
    model = new EndpointsModel({ client, pollInterval: 60000 });
    await model.refresh();
    palette = [];
    menu = [];
    activated = [];
    panel = new Widget();
    panel.id = 'edgebook-sidebar';
    const app = {
      commands,
      contextMenu: { addItem: (item: (typeof menu)[0]) => menu.push(item) },
      contextMenuHitTest: () => undefined,
      shell: {
        activateById: (id: string) => activated.push(id),
        widgets: () => [][Symbol.iterator](),
        add: () => undefined
      }
    } as unknown as JupyterFrontEnd;
    const status = new StatusRegion();
    list = new EndpointList({ model, commands, trans, status });
    registerCommands({
      app,
      model,
      trans,
      panel,
      list,
      builder: new RequestBuilder({ trans }),
      settings: () => DEFAULT_SETTINGS,
      palette: {
        addItem: (item: (typeof palette)[0]) => palette.push(item)
      } as unknown as ICommandPalette,
      tracker: null,
      languages: null
    });
  });

  afterEach(() => {
    list.dispose();
    model.dispose();
  });

  it('puts every endpoint action in the palette and the rows context menu', () => {
    const expected = [
      'edgebook:start',
      'edgebook:stop',
      'edgebook:restart',
      'edgebook:delete',
      'edgebook:open-logs',
      'edgebook:open-source',
      'edgebook:recent-requests',
      'edgebook:copy-url',
      'edgebook:copy-curl',
      'edgebook:try'
    ];
    for (const id of expected) {
      expect(commands.hasCommand(id)).toBe(true);
      expect(palette).toContainEqual({ command: id, category: 'Edgebook' });
      expect(
        menu.some(
          item => item.command === id && item.selector === '.eb-Endpoint'
        )
      ).toBe(true);
    }
    expect(palette.map(p => p.command)).toContain(CommandIDs.focusPanel);
    expect(ENDPOINT_COMMANDS).toHaveLength(expected.length);
  });

  it('labels depend on where the command shows', () => {
    expect(commands.label(CommandIDs.stop, { name: 'alpha' })).toBe(
      'Stop alpha'
    );
    expect(commands.label(CommandIDs.stop, { source: 'context-menu' })).toBe(
      'Stop'
    );
    expect(commands.label(CommandIDs.stop, {})).toBe('Stop Endpoint\u2026');
  });

  it('acts on the named endpoint, or on the only one from the palette, and follows its state', async () => {
    expect(commands.isEnabled(CommandIDs.start, { name: 'alpha' })).toBe(false);
    await commands.execute(CommandIDs.stop, {});
    expect(client.acts).toEqual(['stop alpha']);
    expect(commands.isEnabled(CommandIDs.start, { name: 'alpha' })).toBe(true);
    await commands.execute(CommandIDs.start, { name: 'alpha' });
    expect(client.acts).toEqual(['stop alpha', 'start alpha']);
    expect(model.views.get('alpha')?.state).toBe('running');
  });

  it('opens the admin page through Jupyter in a new tab', async () => {
    const open = vi.spyOn(window, 'open').mockReturnValue(null);
    expect(palette.map(p => p.command)).toContain(CommandIDs.openAdmin);
    expect(commands.label(CommandIDs.openAdmin)).toBe('Open the Admin Page');
    await commands.execute(CommandIDs.openAdmin);
    const [url, target] = open.mock.calls[0];
    expect(String(url)).toMatch(/\/edgebook\/admin\/$/);
    expect(target).toBe('_blank');
    open.mockRestore();
  });

  it('focus-panel activates the sidebar', async () => {
    const focus = vi.spyOn(list, 'focusFirst');
    await commands.execute(CommandIDs.focusPanel);
    expect(activated).toEqual(['edgebook-sidebar']);
    expect(focus).toHaveBeenCalled();
  });
});
