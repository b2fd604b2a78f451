// The app's screens, in navigation order. Adding a screen is one entry
// here.
import type { FunctionComponent } from "preact";
import { Ask } from "./screens/Ask";
import { Audit } from "./screens/Audit";
import { Federation } from "./screens/Federation";
import { Library } from "./screens/Library";
import { Personalize } from "./screens/Personalize";
import { Try } from "./screens/Try";

export interface ScreenEntry {
  id: string;
  label: string;
  /** Screens stay mounted (a running job keeps its progress); `active`
   * tells a screen it is shown, so it can refresh. */
  component: FunctionComponent<{ active: boolean }>;
}

export const SCREENS: ScreenEntry[] = [
  { id: "library", label: "Library", component: Library },
  { id: "personalize", label: "Personalize", component: Personalize },
  { id: "try", label: "Try", component: Try },
  { id: "ask", label: "Ask", component: Ask },
  { id: "federation", label: "Federation", component: Federation },
  { id: "audit", label: "Audit", component: Audit },
];
