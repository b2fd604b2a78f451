// Every UI test runs against mocked IPC: the Tauri internals are faked by
// @tauri-apps/api/mocks, and thumbnails get Linux's custom-scheme URLs.
import { cleanup } from "@testing-library/preact";
import { clearMocks, mockConvertFileSrc } from "@tauri-apps/api/mocks";
import { afterEach, beforeEach } from "vitest";

beforeEach(() => {
  mockConvertFileSrc("linux");
});

afterEach(() => {
  cleanup();
  clearMocks();
});
