import { describe, expect, it } from 'vitest'
import { looksLikeMath, MATH_DIRECTIVE } from '../../src/normalize/index.ts'

describe('looksLikeMath', () => {
  it.each([
    ['What is 12 * 7?'],
    ['Find x if x^2 = 49.'],
    ['Simplify \\frac{3}{4} + \\frac{1}{8}'],
    ['Compute $a_n$ for the sequence.'],
    ['Show that \\( a < b \\).'],
    ['Is √2 rational?'],
    ['If 3x = 12, what is the value?'],
    ['Let f(x) = 3 - x. Where is it zero?'],
    ['What is 17 times 23?'],
    ['12 - 7'],
    ['what is (1.5 + 2) / 3 ='],
    ['How many apples are left if I have 5 and eat 2?'],
    ['Solve for x: the sum of x and three is ten.'],
    ['What is the probability of rolling a 6 twice?'],
    ['Prove that there are infinitely many primes.'],
    ['Factor the polynomial completely.'],
    ['Evaluate sqrt(2) to three places.'],
    ['A train travels 60 km per hour for 2.5 hours. Calculate the distance.'],
  ])('recognizes %j as math', (text) => {
    expect(looksLikeMath(text)).toBe(true)
  })

  it.each([
    ['I have 3 cats.'],
    ['Write a haiku about autumn.'],
    ['How many moons does Mars have?'],
    ['The meeting is on 2024-05-01 at 10:30.'],
    ['Our support line is open 24/7.'],
    ['Read pages 10-20 before class.'],
    ['I love C++ and C# equally.'],
    ['It costs $5 or $10 depending on size.'],
    ['Step 2\n* a thing to do'],
    ['Why does `arr[i+1]` throw here?'],
    ['```js\nconst total = a * b + 1\nconsole.log(total)\n```\nWhat does this print?'],
    ['Call console.log(x) to see it.'],
    ['Translate "le chat" into English.'],
    ['This is an integral part of the plan.'],
    ['Email me at jo@example.com about the 3 reports.'],
  ])('keeps %j as prose', (text) => {
    expect(looksLikeMath(text)).toBe(false)
  })

  it('counts the directive itself as math, so a turn holding it is never asked twice', () => {
    expect(looksLikeMath(MATH_DIRECTIVE)).toBe(true)
  })

  it('stays fast on a long line of unclosed delimiters', () => {
    const hostile = `${'$^'.repeat(50_000)}${'<think>\\('.repeat(20_000)}`
    const started = performance.now()
    looksLikeMath(hostile.replaceAll('$', '$ '))
    looksLikeMath(`$${'^'.repeat(200_000)}`)
    expect(performance.now() - started).toBeLessThan(500)
  })
})
