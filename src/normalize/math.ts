/** DeepSeek-R1's recommended directive for math problems, appended to the last user turn. */
export const MATH_DIRECTIVE = 'Please reason step by step, and put your final answer within \\boxed{}.'

/*
 * How looksLikeMath decides (English prompts; false positives cost a stray directive, so every
 * signal is chosen to stay quiet on ordinary prose, code and dates):
 *
 * Strong signals, any one is enough:
 * - LaTeX: a math command (\frac, \sqrt, \sum, \int, \cdot, \leq, \pi, \begin{align}, ...), the
 *   delimiters \( \) or \[ \], or a $...$ span holding \, ^ or _ (so "$5 and $10" is not math).
 * - math symbols: √ ∫ ∑ ∏ ∂ ∞ ≤ ≥ ≠ ≈ ± × ÷ ∈ ...
 * - an operation: operand, one of + * × ÷ ^ ·, operand, where an operand is a number, a
 *   one-letter variable ("2x", "a", not "C" in "C++") or a bracket: "12 * 7", "x^2", "a+b".
 *   Minus and slash are left out because "2024-05-01", "pages 10-20" and "24/7" are prose.
 * - an equation with a coefficient ("3x = 12", "y = 2x") or a function ("f(x) = ..."), and
 *   function calls like sqrt(2) or sin(x) that are not method calls (console.log( is code).
 * - worded arithmetic: "17 times 23", "8 divided by 2".
 * - a message that is nothing but an arithmetic expression, optionally after "what is",
 *   "compute" or the like: "What is 12 - 7?", "3/4", "(1.5 + 2) / 3 =".
 * - unambiguous terms: polynomial, quadratic, factorial, logarithm, hypotenuse, prime numbers,
 *   gcd, least common multiple, arithmetic/geometric sequence, ...
 * Weak signal, which needs a number or a variable (x, y, z, n) somewhere in the text:
 * - task words: solve, calculate, compute, evaluate, simplify, prove, equation, integral,
 *   derivative, probability, how many, sum of, remainder, divisible, percent, average of, ...
 *   So "How many moons does Mars have?" stays prose but "how many apples if I eat 2?" is math.
 * Fenced and inline code is removed first: `i+1` in a program is not a math problem.
 * A plain sentence with one number ("I have 3 cats.") matches none of these.
 *
 * Every pattern is linear-time (no nested or overlapping quantifiers) since prompts are large
 * and attacker-controlled.
 */

const CODE = /```[\s\S]*?```|`[^`\n]*`/g

const words = (list: readonly string[]) => list.join('|')

const LATEX_COMMANDS = words([
  'd?frac',
  'sqrt',
  'sum',
  'prod',
  'int',
  'oint',
  'lim',
  'binom',
  'cdot',
  'times',
  'div',
  'pm',
  'mp',
  'leq?',
  'geq?',
  'neq',
  'approx',
  'equiv',
  'infty',
  'pi',
  'theta',
  'alpha',
  'beta',
  'mathbb',
  'boxed',
  'left',
  'right',
  String.raw`begin\{(?:equation|align|cases|[bp]?matrix)\}`,
])
const MATH_TERMS = words([
  'antiderivative',
  'polynomials?',
  'quadratic',
  'logarithms?',
  'factorial',
  'hypotenuse',
  'prime numbers?',
  'primes',
  'gcd',
  'lcm',
  'greatest common divisor',
  'least common multiple',
  '(?:arithmetic|geometric) (?:progression|sequence|series)',
  'infinitely many',
])
const TASK_WORDS = words([
  'solve',
  'calculate',
  'compute',
  'evaluate',
  'simplify',
  'prove',
  'equations?',
  'inequality',
  'integral',
  'derivative',
  'probability',
  'how many',
  'sum of',
  'product of',
  'remainder',
  'divisible',
  'percent(?:age)?',
  'average of',
  'area of',
  'volume of',
  'perimeter',
  'find the value',
  'expected value',
])

// An operand ends in a digit, a one-letter variable (not preceded by a letter) or ")"; the
// next one starts with a digit, a one-letter variable (not followed by a letter) or "(".
const OPERATION = /(?:\d|(?<![a-z])[a-z]|\))[ \t]*[+*×÷^·][ \t]*(?:\d|[a-z](?![a-z])|\()/i
const COEFFICIENT_EQUATION = /\b\d+(?:\.\d+)?[a-z]\b[ \t]*=(?!=)|(?<![=<>!])=[ \t]*-?\d+(?:\.\d+)?[a-z]\b/i
const FUNCTION_DEFINITION = /\b[a-z]\([a-z]\)[ \t]*=/i
const FUNCTION_CALL = /(?<![.\w])(?:sqrt|cbrt|log|ln|sin|cos|tan|exp)[ \t]*\(/i
const WORDED_ARITHMETIC = /\d[ \t]+(?:plus|minus|times|multiplied by|divided by|to the power of)[ \t]+\d/i

const STRONG: readonly RegExp[] = [
  new RegExp(String.raw`\\(?:${LATEX_COMMANDS})(?![a-zA-Z])`),
  /[√∛∫∬∮∑∏∂∇∞≤≥≠≈≡±∓×÷∈∉⊂⊆∪∩∀∃]/u,
  OPERATION,
  COEFFICIENT_EQUATION,
  FUNCTION_DEFINITION,
  FUNCTION_CALL,
  WORDED_ARITHMETIC,
  new RegExp(String.raw`\b(?:${MATH_TERMS})\b`, 'i'),
]

const TASK_WORD = new RegExp(String.raw`\b(?:${TASK_WORDS})\b`, 'i')
const OPERAND = /\d|\b[xyzn]\b/

const QUESTION_WRAPPER = /^\s*(?:what\s+is|what's|compute|calculate|evaluate)?/i
const ONLY_ARITHMETIC = /^[\d\s.,()+\-−*/×÷^=?]+$/
const NUMBER_OPERATOR_NUMBER = /\d[ \t]*[-−+*/×÷^][ \t]*\(?[ \t]*\d/

export function looksLikeMath(text: string): boolean {
  const prose = text.replace(CODE, ' ')
  if (STRONG.some((pattern) => pattern.test(prose))) return true
  if (hasLatexDelimiters(prose) || isBareArithmetic(prose)) return true
  return TASK_WORD.test(prose) && OPERAND.test(prose)
}

function hasLatexDelimiters(text: string): boolean {
  if (/\\\(/.test(text) && /\\\)/.test(text)) return true
  if (/\\\[/.test(text) && /\\\]/.test(text)) return true
  // Each $...$ span on its own, so the check stays linear on lines full of dollar signs.
  return (text.match(/\$[^$\n]*\$/g) ?? []).some((span) => /[\\^_]/.test(span))
}

function isBareArithmetic(text: string): boolean {
  const expression = text.replace(QUESTION_WRAPPER, '')
  return ONLY_ARITHMETIC.test(expression) && NUMBER_OPERATOR_NUMBER.test(expression)
}
