// The GraphQL API over HTTP with the pasted token (kept in sessionStorage: gone when the tab closes).

const KEY = 'costgraph.console.token';

export function storedToken() {
  return sessionStorage.getItem(KEY);
}

export function keepToken(token) {
  sessionStorage.setItem(KEY, token);
}

export function forgetToken() {
  sessionStorage.removeItem(KEY);
}

export class ApiError extends Error {
  constructor(errors) {
    super(errors.map((e) => e.message).join('; '));
    this.errors = errors;
    this.code = errors[0]?.extensions?.code ?? errors[0]?.code ?? null;
  }
}

export async function gql(query, variables = {}) {
  const response = await fetch('/graphql', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${storedToken()}` },
    body: JSON.stringify({ query, variables }),
  });
  let body;
  try {
    body = await response.json();
  } catch {
    throw new ApiError([{ message: `the server answered HTTP ${response.status}` }]);
  }
  if (body.errors?.length) throw new ApiError(body.errors);
  if (!response.ok) throw new ApiError([{ message: `the server answered HTTP ${response.status}` }]);
  return body.data;
}

// A mutation's typed error (a member of its result union with a `code`) becomes an ApiError.
export function unwrap(result) {
  if (result && typeof result.code === 'string' && typeof result.message === 'string') {
    throw new ApiError([{ message: result.message, code: result.code, field: result.field }]);
  }
  return result;
}

// The token's own claims, read (not verified: the server does that) to find a member's accounts.
export function tokenClaims(token = storedToken()) {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(atob(part.padEnd(part.length + ((4 - (part.length % 4)) % 4), '=')));
  } catch {
    return {};
  }
}
