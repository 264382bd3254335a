// Files the Worker imports as text (wrangler.toml [[rules]] type = "Text"): the default export is
// the file's contents. `.browser.js` marks browser code, which the Worker never runs.
declare module '*.html' {
  const text: string
  export default text
}
declare module '*.css' {
  const text: string
  export default text
}
declare module '*.browser.js' {
  const text: string
  export default text
}
