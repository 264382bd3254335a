// Dynamic values in the page templates (src/pages/**/*.html): a {{name}} slot is replaced by
// text, always HTML-escaped, so a value can never become markup. Slots sit in text content or in
// double-quoted attribute values, where escaping &, <, >, " and ' is enough.

const ENTITIES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (char) => ENTITIES[char] as string)
}

const SLOT = /\{\{(\w+)\}\}/g

/**
 * The template with each {{name}} slot filled from `values`, escaped. A slot without a value or a
 * value without a slot is a mismatch between the page and its route: thrown, never served.
 */
export function fillTemplate(template: string, values: Readonly<Record<string, string>>): string {
  const used = new Set<string>()
  const filled = template.replace(SLOT, (_slot, name: string) => {
    const value = values[name]
    if (value === undefined) throw new Error(`the page template has a slot {{${name}}} without a value`)
    used.add(name)
    return escapeHtml(value)
  })
  const unused = Object.keys(values).filter((name) => !used.has(name))
  if (unused.length > 0) throw new Error(`the page template has no slot for ${unused.join(', ')}`)
  return filled
}
