// Lints the front end for what the type checker cannot see: the rules of
// hooks and effect dependencies (eslint-plugin-react-hooks; Preact's hooks
// follow React's). TypeScript 7's compiler has no JavaScript API for
// typescript-eslint to parse with, so Babel's TypeScript preset parses the
// sources; type errors are `tsc`'s job (npm run ui:build).
import babelParser from "@babel/eslint-parser";
import reactHooks from "eslint-plugin-react-hooks";

export default [
  {
    files: ["ui/src/**/*.{ts,tsx}", "ui/tests/**/*.{ts,tsx}"],
    languageOptions: {
      parser: babelParser,
      parserOptions: {
        requireConfigFile: false,
        babelOptions: {
          babelrc: false,
          configFile: false,
          presets: [["@babel/preset-typescript", { isTSX: true, allExtensions: true }]],
        },
      },
    },
    linterOptions: { reportUnusedDisableDirectives: "error" },
    plugins: { "react-hooks": reactHooks },
    rules: {
      "react-hooks/rules-of-hooks": "error",
      "react-hooks/exhaustive-deps": "error",
    },
  },
];
