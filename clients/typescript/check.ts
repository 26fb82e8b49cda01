// Compiled by CI (tsc --noEmit, strict) against the types openapi-typescript generates from
// openapi.json: what a TypeScript client relies on must keep its type.
import type { components, operations, paths } from "../generated/taskapi";

type Schemas = components["schemas"];

const login: Schemas["LoginRequest"] = { email: "ada@example.com", password: "Str0ng!Passw0rd" };
const form: Schemas["LoginForm"] = { username: login.email, password: login.password };

function nextVersion(conflict: Schemas["VersionConflictProblem"]): number {
  return conflict.current_version;
}

function lockedUntil(problem: Schemas["AccountLockedProblem"]): Date {
  return new Date(problem.locked_until);
}

function fieldsInError(problem: Schemas["ValidationProblem"]): string[] {
  return problem.errors.map((error) => error.field);
}

function nextPage(page: Schemas["TaskPage"]): string | null {
  return page.next_cursor;
}

type UpdateTask = operations["update_task"];
const ifMatch: NonNullable<UpdateTask["parameters"]["header"]>["If-Match"] = '"3"';
type Conflict = UpdateTask["responses"][409]["content"]["application/problem+json"];
const conflict: Conflict = {
  type: "https://taskapi.dev/problems/version-conflict",
  title: "Conflict",
  status: 409,
  detail: "The task has changed since you read it.",
  code: "version_conflict",
  request_id: null,
  current_version: 4,
};

type Created = paths["/api/v1/tasks"]["post"]["responses"][201]["content"]["application/json"];
const priority: Created["priority"] = "high";
const created: Schemas["TaskCreate"] = { title: "Write the quarterly report" };
const update: Schemas["TaskUpdate"] = { status: "completed", version: nextVersion(conflict) };

export const checked = [form, created, ifMatch, priority, update, lockedUntil, fieldsInError, nextPage];
