import { describe, expect, it } from 'vitest'
import { escapeHtml, fillTemplate } from '../../src/pages/template.ts'

describe('page templates', () => {
  it('fills every slot with escaped text, so a value can never become markup or leave its attribute', () => {
    const page = fillTemplate('<p title="{{title}}">{{message}}</p><p>{{message}}</p>', {
      title: '" onmouseover="alert(1)',
      message: '<script>alert("x")</script> & \'more\'',
    })
    expect(page).toBe(
      '<p title="&quot; onmouseover=&quot;alert(1)">&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;more&#39;</p>' +
        '<p>&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;more&#39;</p>',
    )
    expect(escapeHtml('a{{b}}c')).toBe('a{{b}}c')
  })

  it('does not read a slot out of a filled-in value', () => {
    expect(fillTemplate('<p>{{a}}</p>', { a: '{{a}}' })).toBe('<p>{{a}}</p>')
  })

  it('refuses a slot without a value and a value without a slot', () => {
    expect(() => fillTemplate('<p>{{message}}</p>', {})).toThrow('{{message}}')
    expect(() => fillTemplate('<p></p>', { message: 'hi' })).toThrow('no slot for message')
  })
})
