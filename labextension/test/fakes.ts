/** What the sidebar tests share: an endpoint as the server's listing shows it. */
import { IEndpoint, IEndpointMetrics } from '../src/tokens';

/** A `GET /<name>` endpoint in `state`, without an origin. */
export function endpoint(
  name: string,
  state = 'running',
  metrics: IEndpointMetrics | null = null
): IEndpoint {
  return {
    name,
    method: 'GET',
    path: `/${name}`,
    domain: null,
    state,
    reason: null,
    options: {},
    origin: null,
    metrics
  };
}
