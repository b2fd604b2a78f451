import { render, waitFor } from "@testing-library/preact";
import { describe, expect, it } from "vitest";
import { useLoad } from "../src/lib/useJob";

function Probe({ active, load }: { active: boolean; load: () => Promise<number> }) {
  const loaded = useLoad(load, [], active);
  return <p>{loaded.value === null ? "nothing" : `value ${loaded.value}`}</p>;
}

describe("useLoad", () => {
  it("loads nothing while hidden, then once each time the screen is shown", async () => {
    let calls = 0;
    const load = () => Promise.resolve(++calls);
    const view = render(<Probe active={false} load={load} />);
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(calls).toBe(0);
    view.rerender(<Probe active={true} load={load} />);
    await waitFor(() => expect(view.container.textContent).toBe("value 1"));
    // A new closure on every render does not reload.
    view.rerender(<Probe active={true} load={() => Promise.resolve(++calls)} />);
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(calls).toBe(1);
    view.rerender(<Probe active={false} load={load} />);
    view.rerender(<Probe active={true} load={load} />);
    await waitFor(() => expect(view.container.textContent).toBe("value 2"));
  });
});
