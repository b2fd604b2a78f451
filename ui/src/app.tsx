// The shell: a tab bar over the screens (arrow keys move between tabs, as
// in the WAI-ARIA tabs pattern) and the screens, kept mounted.
import { useRef, useState } from "preact/hooks";
import { SCREENS, type ScreenEntry } from "./screens";

export function App({ screens = SCREENS }: { screens?: ScreenEntry[] }) {
  const [current, setCurrent] = useState(screens[0]?.id ?? "");
  const tabs = useRef<(HTMLButtonElement | null)[]>([]);

  const onKeyDown = (e: KeyboardEvent, index: number) => {
    const last = screens.length - 1;
    const next =
      e.key === "ArrowRight" ? (index === last ? 0 : index + 1)
      : e.key === "ArrowLeft" ? (index === 0 ? last : index - 1)
      : e.key === "Home" ? 0
      : e.key === "End" ? last
      : null;
    if (next === null) return;
    e.preventDefault();
    const screen = screens[next];
    if (!screen) return;
    setCurrent(screen.id);
    tabs.current[next]?.focus();
  };

  return (
    <>
      <a class="skip-link" href={`#panel-${current}`}>
        Skip to content
      </a>
      <header class="top">
        <h1 class="brand">Hearth</h1>
        <nav aria-label="Screens">
          <div role="tablist" aria-label="Screens" class="tabs">
            {screens.map((screen, index) => (
              <button
                key={screen.id}
                id={`tab-${screen.id}`}
                role="tab"
                ref={(el) => {
                  tabs.current[index] = el;
                }}
                aria-selected={screen.id === current}
                aria-controls={`panel-${screen.id}`}
                tabIndex={screen.id === current ? 0 : -1}
                onClick={() => setCurrent(screen.id)}
                onKeyDown={(e) => onKeyDown(e, index)}
              >
                {screen.label}
              </button>
            ))}
          </div>
        </nav>
      </header>
      <main>
        {screens.map((screen) => {
          const Screen = screen.component;
          return (
            <div
              key={screen.id}
              id={`panel-${screen.id}`}
              role="tabpanel"
              aria-labelledby={`tab-${screen.id}`}
              hidden={screen.id !== current}
              tabIndex={-1}
            >
              <Screen active={screen.id === current} />
            </div>
          );
        })}
      </main>
    </>
  );
}
