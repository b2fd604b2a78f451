import { fireEvent, render, screen } from "@testing-library/preact";
import { describe, expect, it } from "vitest";
import { App } from "../src/app";
import { SCREENS } from "../src/screens";

const fakeScreens = [
  { id: "one", label: "One", component: ({ active }: { active: boolean }) => <p>one {String(active)}</p> },
  { id: "two", label: "Two", component: ({ active }: { active: boolean }) => <p>two {String(active)}</p> },
  { id: "three", label: "Three", component: ({ active }: { active: boolean }) => <p>three {String(active)}</p> },
];

describe("navigation", () => {
  it("lists the screens that exist (no placeholders)", () => {
    expect(SCREENS.map((s) => s.id)).toEqual(["library", "personalize", "try", "ask", "federation", "audit"]);
  });

  it("moves between tabs with the arrow keys and keeps screens mounted", () => {
    render(<App screens={fakeScreens} />);
    const tabs = screen.getAllByRole("tab");
    expect(tabs.map((t) => t.getAttribute("aria-selected"))).toEqual(["true", "false", "false"]);
    fireEvent.keyDown(tabs[0] as HTMLElement, { key: "ArrowRight" });
    expect(screen.getByRole("tab", { name: "Two" }).getAttribute("aria-selected")).toBe("true");
    expect(document.activeElement?.textContent).toBe("Two");
    fireEvent.keyDown(screen.getByRole("tab", { name: "Two" }), { key: "End" });
    expect(screen.getByRole("tab", { name: "Three" }).getAttribute("aria-selected")).toBe("true");
    fireEvent.keyDown(screen.getByRole("tab", { name: "Three" }), { key: "ArrowRight" });
    expect(screen.getByRole("tab", { name: "One" }).getAttribute("aria-selected")).toBe("true");
    // Hidden screens stay mounted, told they are not shown.
    expect(screen.getByText("two false", { ignore: false } as never)).toBeTruthy();
    expect(screen.getByText("one true")).toBeTruthy();
  });
});
