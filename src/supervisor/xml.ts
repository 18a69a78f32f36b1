// A deliberately small and strict XML parser for busconfig files: elements, attributes, text,
// CDATA, comments, processing instructions and a prologue (<?xml?>, <!DOCTYPE>). Hand-written so
// that every element carries its exact line number, which config warnings and errors need,
// without a dependency.
//
// It accepts what expat (used by dbus-daemon) accepts, with two deliberate exceptions, both
// refusals where expat would read something other than what the file seems to say:
//  - declarations inside <!DOCTYPE [ ... ]>: expat applies <!ENTITY> definitions and
//    <!ATTLIST> default attributes (a default can add send_type="..." to every <allow>);
//  - references to undefined entities: where the file has an external DTD (the standard
//    busconfig DOCTYPE has one), expat drops them silently, so own="a&x;b" would mean "ab".
// The tests in config.test.ts hold the cases checked against expat and dbus-daemon.

import { ConfigError } from './config-error.js';

export interface XmlElement {
  readonly kind: 'element';
  readonly name: string;
  readonly attributes: Readonly<Record<string, string>>;
  readonly children: readonly XmlNode[];
  readonly line: number;
}

export interface XmlText {
  readonly kind: 'text';
  readonly text: string;
  readonly line: number;
}

export type XmlNode = XmlElement | XmlText;

// XML 1.0 (fifth edition) names.
const NAME_START = ':A-Z_a-z\\u00C0-\\u00D6\\u00D8-\\u00F6\\u00F8-\\u02FF\\u0370-\\u037D\\u037F-\\u1FFF\\u200C\\u200D\\u2070-\\u218F\\u2C00-\\u2FEF\\u3001-\\uD7FF\\uF900-\\uFDCF\\uFDF0-\\uFFFD\\u{10000}-\\u{EFFFF}';
const NAME_CHAR = `${NAME_START}\\-.0-9\\u00B7\\u0300-\\u036F\\u203F-\\u2040`;
const NAME = new RegExp(`[${NAME_START}][${NAME_CHAR}]*`, 'uy');
const PREDEFINED_ENTITIES: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };
const BAD_CHAR = /[\x00-\x08\x0B\x0C\x0E-\x1F\uFFFE\uFFFF]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
const PUBID_CHAR = /^[ \r\na-zA-Z0-9\-'()+,./:=?;!*#@$_%]*$/;
const XML_DECL = /<\?xml([ \t\r\n]+version[ \t\r\n]*=[ \t\r\n]*("[a-zA-Z0-9_.:-]+"|'[a-zA-Z0-9_.:-]+'))([ \t\r\n]+encoding[ \t\r\n]*=[ \t\r\n]*("[A-Za-z][A-Za-z0-9._-]*"|'[A-Za-z][A-Za-z0-9._-]*'))?([ \t\r\n]+standalone[ \t\r\n]*=[ \t\r\n]*("(yes|no)"|'(yes|no)'))?[ \t\r\n]*\?>/y;

class XmlParser {
  private pos = 0;
  private readonly lineStarts: number[] = [0];

  constructor(
    private readonly text: string,
    private readonly file: string,
  ) {
    for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) === 10) this.lineStarts.push(i + 1);
  }

  lineAt(offset: number): number {
    let low = 0;
    let high = this.lineStarts.length - 1;
    while (low < high) {
      const mid = (low + high + 1) >> 1;
      if (this.lineStarts[mid]! <= offset) low = mid;
      else high = mid - 1;
    }
    return low + 1;
  }

  fail(message: string, offset = this.pos): never {
    throw new ConfigError('CONFIG_XML', this.file, this.lineAt(offset), message);
  }

  document(): XmlElement {
    const bad = BAD_CHAR.exec(this.text);
    if (bad) this.fail(`character U+${bad[0].charCodeAt(0).toString(16).padStart(4, '0')} is not allowed in XML`, bad.index);
    this.xmlDeclaration();
    let sawDoctype = false;
    let root: XmlElement | undefined;
    for (;;) {
      this.skipWhitespace();
      if (this.pos >= this.text.length) break;
      if (this.at('<?')) this.processingInstruction();
      else if (this.at('<!--')) this.comment();
      else if (this.at('<!DOCTYPE')) {
        if (sawDoctype || root) this.fail('<!DOCTYPE> must come once, before the root element');
        sawDoctype = true;
        this.doctype();
      } else if (this.at('<') && !this.at('</') && !this.at('<!')) {
        if (root) this.fail('a document has exactly one root element; found another');
        root = this.element();
      } else {
        this.fail(root ? 'unexpected content after the root element' : 'expected the root element');
      }
    }
    if (!root) this.fail('the document has no root element');
    return root;
  }

  private at(token: string): boolean {
    return this.text.startsWith(token, this.pos);
  }

  private skipWhitespace(): boolean {
    const start = this.pos;
    while (this.pos < this.text.length && ' \t\n\r'.includes(this.text[this.pos]!)) this.pos++;
    return this.pos > start;
  }

  private name(): string {
    NAME.lastIndex = this.pos;
    const match = NAME.exec(this.text);
    if (!match) this.fail('expected a name');
    this.pos += match[0].length;
    return match[0];
  }

  /** `<?xml version="..." encoding="..." standalone="..."?>`, only at the very start. */
  private xmlDeclaration(): void {
    if (!/^<\?xml[ \t\r\n?]/.test(this.text)) return;
    XML_DECL.lastIndex = 0;
    const match = XML_DECL.exec(this.text);
    if (!match) this.fail('the <?xml?> declaration is not well-formed: it is <?xml version="1.0" encoding="..." standalone="yes|no"?>, in that order', 0);
    // The declared encoding is not used: like dbus-daemon, which tells expat the bytes are
    // UTF-8, the file is read as UTF-8 (or UTF-16 with a byte order mark).
    this.pos = match[0].length;
  }

  private processingInstruction(): void {
    const start = this.pos;
    this.pos += 2;
    const target = this.name();
    if (target === 'xml') this.fail('the <?xml?> declaration must be at the very start of the file', start);
    if (target.toLowerCase() === 'xml') this.fail(`processing instruction target '${target}' is reserved`, start);
    const end = this.text.indexOf('?>', this.pos);
    if (end < 0) this.fail(`<?${target} is not closed with ?>`, start);
    if (end > this.pos && !this.skipWhitespace()) this.fail(`expected whitespace after <?${target}`);
    this.pos = end + 2;
  }

  private comment(): void {
    const start = this.pos;
    const end = this.text.indexOf('--', start + 4);
    if (end < 0) this.fail('comment is not closed with -->', start);
    if (this.text[end + 2] !== '>') this.fail("'--' is not allowed inside a comment", end);
    this.pos = end + 3;
  }

  private quoted(what: string): string {
    const quote = this.text[this.pos];
    if (quote !== '"' && quote !== "'") this.fail(`expected a quoted ${what}`);
    const close = this.text.indexOf(quote, this.pos + 1);
    if (close < 0) this.fail(`${what} is not closed`);
    const value = this.text.slice(this.pos + 1, close);
    this.pos = close + 1;
    return value;
  }

  /**
   * `<!DOCTYPE name (SYSTEM "..." | PUBLIC "..." "...")? ([ ... ])? >`. The internal subset
   * may hold comments and processing instructions only (see the header comment).
   */
  private doctype(): void {
    const start = this.pos;
    this.pos += 9;
    if (!this.skipWhitespace()) this.fail('expected whitespace after <!DOCTYPE');
    this.name();
    let spaced = this.skipWhitespace();
    if (spaced && (this.at('SYSTEM') || this.at('PUBLIC'))) {
      const isPublic = this.at('PUBLIC');
      this.pos += 6;
      if (!this.skipWhitespace()) this.fail('expected whitespace after SYSTEM or PUBLIC');
      if (isPublic) {
        const at = this.pos;
        if (!PUBID_CHAR.test(this.quoted('public identifier'))) this.fail('illegal character in the public identifier', at);
        if (!this.skipWhitespace()) this.fail('expected whitespace and a system identifier after the public identifier');
      }
      this.quoted('system identifier');
      spaced = this.skipWhitespace();
    }
    if (this.at('[')) {
      this.pos++;
      for (;;) {
        this.skipWhitespace();
        if (this.pos >= this.text.length) this.fail('<!DOCTYPE is not closed', start);
        if (this.at(']')) break;
        if (this.at('<!--')) this.comment();
        else if (this.at('<?')) this.processingInstruction();
        else if (/^(<!(ENTITY|ATTLIST|ELEMENT|NOTATION)[ \t\r\n]|%)/.test(this.text.slice(this.pos, this.pos + 11))) {
          this.fail(
            'declarations inside <!DOCTYPE [ ... ]> are not supported: expat would apply their entities and default attributes; ferrybus refuses rather than read the file differently',
          );
        } else this.fail('syntax error in the <!DOCTYPE> internal subset');
      }
      this.pos++;
      this.skipWhitespace();
    } else if (!spaced && !this.at('>')) {
      this.fail('syntax error in <!DOCTYPE>');
    }
    if (!this.at('>')) this.fail('syntax error in <!DOCTYPE>: expected >');
    this.pos++;
  }

  private decode(raw: string, offset: number): string {
    return raw.replace(/&([^;&<\s]*);?/g, (whole, body: string, at: number) => {
      if (!whole.endsWith(';')) this.fail(`'&' must start an entity reference like &amp;`, offset + at);
      if (body.startsWith('#')) {
        const code = /^#x[0-9A-Fa-f]+$/.test(body)
          ? parseInt(body.slice(2), 16)
          : /^#[0-9]+$/.test(body)
            ? parseInt(body.slice(1), 10)
            : NaN;
        const valid =
          code === 0x9 || code === 0xa || code === 0xd ||
          (code >= 0x20 && code <= 0xd7ff) || (code >= 0xe000 && code <= 0xfffd) ||
          (code >= 0x10000 && code <= 0x10ffff);
        if (!valid) this.fail(`&${body}; is not a valid character reference`, offset + at);
        return String.fromCodePoint(code);
      }
      const value = PREDEFINED_ENTITIES[body];
      if (value === undefined) {
        this.fail(`unknown entity &${body}; (only &lt; &gt; &amp; &quot; &apos; and character references like &#x41; are defined)`, offset + at);
      }
      return value;
    });
  }

  private element(): XmlElement {
    const start = this.pos;
    const line = this.lineAt(start);
    this.pos++;
    const name = this.name();
    const attributes: Record<string, string> = {};
    const seen = new Set<string>();
    for (;;) {
      const spaced = this.skipWhitespace();
      if (this.at('/>')) {
        this.pos += 2;
        return { kind: 'element', name, attributes, children: [], line };
      }
      if (this.at('>')) {
        this.pos++;
        break;
      }
      if (this.pos >= this.text.length) this.fail(`start tag <${name} is not closed`, start);
      if (!spaced) this.fail(`expected whitespace, '>' or '/>' in <${name}>`);
      const attributeAt = this.pos;
      const attribute = this.name();
      this.skipWhitespace();
      if (!this.at('=')) this.fail(`attribute ${attribute} of <${name}> has no value`);
      this.pos++;
      this.skipWhitespace();
      const quote = this.text[this.pos];
      if (quote !== '"' && quote !== "'") this.fail(`value of attribute ${attribute} must be quoted`);
      const close = this.text.indexOf(quote, this.pos + 1);
      if (close < 0) this.fail(`value of attribute ${attribute} is not closed`, attributeAt);
      const raw = this.text.slice(this.pos + 1, close);
      const lt = raw.indexOf('<');
      if (lt >= 0) this.fail(`'<' is not allowed in attribute values`, this.pos + 1 + lt);
      if (seen.has(attribute)) this.fail(`attribute ${attribute} appears twice in <${name}>`, attributeAt);
      seen.add(attribute);
      // XML attribute-value normalisation: literal whitespace becomes a space.
      const value = this.decode(raw.replace(/[\t\n\r]/g, ' '), this.pos + 1);
      Object.defineProperty(attributes, attribute, { value, enumerable: true, writable: true, configurable: true });
      this.pos = close + 1;
    }
    const children: XmlNode[] = [];
    const addText = (text: string, at: number): void => {
      const last = children[children.length - 1];
      if (last?.kind === 'text') children[children.length - 1] = { ...last, text: last.text + text };
      else if (text.length > 0) children.push({ kind: 'text', text, line: this.lineAt(at) });
    };
    for (;;) {
      if (this.pos >= this.text.length) this.fail(`element <${name}> opened on line ${line} is not closed`);
      if (this.at('</')) {
        const endAt = this.pos;
        this.pos += 2;
        const closing = this.name();
        if (closing !== name) this.fail(`</${closing}> does not close <${name}> opened on line ${line}`, endAt);
        this.skipWhitespace();
        if (!this.at('>')) this.fail(`end tag </${closing} is not closed`, endAt);
        this.pos++;
        return { kind: 'element', name, attributes, children, line };
      }
      if (this.at('<!--')) this.comment();
      else if (this.at('<![CDATA[')) {
        const end = this.text.indexOf(']]>', this.pos);
        if (end < 0) this.fail('CDATA section is not closed');
        addText(this.text.slice(this.pos + 9, end), this.pos);
        this.pos = end + 3;
      } else if (this.at('<?')) this.processingInstruction();
      else if (this.at('<!')) this.fail('declarations are only allowed before the root element');
      else if (this.at('<')) children.push(this.element());
      else {
        const textAt = this.pos;
        const next = this.text.indexOf('<', this.pos);
        const end = next < 0 ? this.text.length : next;
        const raw = this.text.slice(this.pos, end);
        const bad = raw.indexOf(']]>');
        if (bad >= 0) this.fail("']]>' is not allowed in text", textAt + bad);
        addText(this.decode(raw, textAt), textAt);
        this.pos = end;
      }
    }
  }
}

/** Parses an XML document strictly and returns its root element. */
export function parseXml(text: string, file: string): XmlElement {
  const normalised = (text.startsWith('\uFEFF') ? text.slice(1) : text).replace(/\r\n?/g, '\n');
  return new XmlParser(normalised, file).document();
}
