//! Alert label and annotation templates: the part of Go's `text/template` that Prometheus rule
//! files use, with Prometheus' functions and data (`$labels`, `$value`, `$externalLabels`,
//! `$externalURL`, `.Labels`, `.Value`).
//!
//! Supported: text, `{{ pipeline }}` with `{{-`/`-}}` trimming, comments, variables and
//! declarations (`$x := …`), fields (`.Labels.host`, `$labels.host`), string/number/bool
//! literals, pipes, parentheses, `if`/`else if`/`else`/`end`, `range` over a map (optionally
//! `$k, $v :=`), and the functions listed in [`FUNCTIONS`]. Parsing happens once, when rules
//! load: an unknown function, an undeclared variable or a syntax error refuses the rule file, as
//! Prometheus does. Execution errors render as `<error expanding template: …>`, as in Prometheus.
//! Maps use `missingkey=zero` (a missing label prints as ""), as Prometheus configures it.
//!
//! Why not a template crate: the one Go-template crate (gtmpl) prints `{{ $value }}` of 1e6 as
//! "1000000" where Go prints "1e+06", and fails `printf "%.2f"` on whole floats; promtool's unit
//! tests compare the rendered text, so the output must be Go's to the character.

use std::{collections::BTreeMap, fmt::Write as _, sync::Arc};

use super::gofmt::{self, FormatArg};

/// Functions a template may call.
pub const FUNCTIONS: &[&str] = &[
    "and",
    "or",
    "not",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "len",
    "index",
    "print",
    "printf",
    "println",
    "html",
    "js",
    "urlquery",
    "humanize",
    "humanize1024",
    "humanizeDuration",
    "humanizePercentage",
    "humanizeTimestamp",
    "toUpper",
    "toLower",
    "title",
    "match",
    "reReplaceAll",
    "stripPort",
    "safeHtml",
    "pathPrefix",
    "externalURL",
    "parseDuration",
];

/// The data a template sees. The maps are shared: every template of an alert (and every alert of
/// a rule, for the external labels) reads the same ones without copying.
#[derive(Debug, Clone, Default)]
pub struct TemplateData {
    /// The result sample's labels (`$labels`, `.Labels`).
    pub labels: Arc<BTreeMap<String, String>>,
    /// External labels (`$externalLabels`).
    pub external_labels: Arc<BTreeMap<String, String>>,
    /// The control plane's URL (`$externalURL`).
    pub external_url: String,
    /// The result sample's value (`$value`, `.Value`).
    pub value: f64,
}

/// A template that failed to parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("template: {name}:{line}:{column}: {message}")]
pub struct TemplateError {
    /// `__alert_<name>`, as Prometheus names rule templates.
    pub name: String,
    /// 1-based line in the template text.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    name: String,
    nodes: Arc<Vec<Node>>,
    plain: Option<String>,
}

#[derive(Debug, Clone)]
enum Node {
    Text(String),
    Action(Pipeline),
    If {
        branches: Vec<(Pipeline, Vec<Node>)>,
        otherwise: Vec<Node>,
    },
    Range {
        pipeline: Pipeline,
        key: Option<String>,
        value: Option<String>,
        body: Vec<Node>,
        otherwise: Vec<Node>,
    },
}

#[derive(Debug, Clone)]
struct Pipeline {
    declare: Option<String>,
    commands: Vec<Command>,
    text: String,
}

#[derive(Debug, Clone)]
struct Command {
    operands: Vec<Operand>,
}

#[derive(Debug, Clone)]
enum Operand {
    Function(String),
    Dot(Vec<String>),
    Variable(String, Vec<String>),
    Str(String),
    Number { int: Option<i64>, float: f64 },
    Bool(bool),
    Nil,
    Group(Box<Pipeline>, Vec<String>),
}

/// A runtime value.
#[derive(Debug, Clone)]
enum Val {
    Str(String),
    Float(f64),
    Int(i64),
    Bool(bool),
    Map(Arc<BTreeMap<String, String>>),
    Data(Arc<TemplateData>),
    Nil,
}

impl Template {
    /// Parses `text` as the template `name` (errors name it).
    ///
    /// # Errors
    /// Syntax errors, unknown functions, undeclared variables, unsupported actions.
    pub fn parse(name: &str, text: &str) -> Result<Self, TemplateError> {
        if !text.contains("{{") {
            return Ok(Self {
                name: name.to_owned(),
                nodes: Arc::new(vec![Node::Text(text.to_owned())]),
                plain: Some(text.to_owned()),
            });
        }
        let mut parser = Parser {
            name,
            text,
            pieces: split(name, text)?,
            pos: 0,
            scopes: vec![
                ["$", "$labels", "$externalLabels", "$externalURL", "$value"]
                    .map(String::from)
                    .to_vec(),
            ],
        };
        let (nodes, end) = parser.nodes()?;
        if let Some(end) = end {
            return Err(parser.error(end.offset, format!("unexpected {{{{{}}}}}", end.keyword)));
        }
        Ok(Self {
            name: name.to_owned(),
            nodes: Arc::new(nodes),
            plain: None,
        })
    }

    /// Whether the text holds no action: it expands to itself whatever the data.
    pub fn is_plain(&self) -> bool {
        self.plain.is_some()
    }

    /// Renders with `data`; an execution error renders as Prometheus renders it.
    pub fn expand(&self, data: &Arc<TemplateData>) -> String {
        if let Some(plain) = &self.plain {
            return plain.clone();
        }
        let mut exec = Exec {
            vars: vec![
                ("$".into(), Val::Data(Arc::clone(data))),
                ("$labels".into(), Val::Map(Arc::clone(&data.labels))),
                (
                    "$externalLabels".into(),
                    Val::Map(Arc::clone(&data.external_labels)),
                ),
                ("$externalURL".into(), Val::Str(data.external_url.clone())),
                ("$value".into(), Val::Float(data.value)),
            ],
            dot: Val::Data(Arc::clone(data)),
            out: String::new(),
            data: Arc::clone(data),
        };
        match exec.run(&self.nodes) {
            Ok(()) => exec.out,
            Err(message) => format!(
                "<error expanding template: error executing template {name}: template: {name}: {message}>",
                name = self.name
            ),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Lexing: text and actions.

#[derive(Debug)]
enum Piece {
    Text(String),
    Action { body: String, offset: usize },
}

fn split(name: &str, text: &str) -> Result<Vec<Piece>, TemplateError> {
    let mut pieces = Vec::new();
    let mut rest = text;
    let mut offset = 0;
    let mut trim_next_text = false;
    while let Some(open) = rest.find("{{") {
        let mut before = &rest[..open];
        if trim_next_text {
            before = before.trim_start();
        }
        let after_open = &rest[open + 2..];
        let trim_left = after_open.starts_with("- ")
            || after_open.starts_with("-\t")
            || after_open.starts_with("-\n");
        if trim_left {
            before = before.trim_end();
        }
        if !before.is_empty() {
            pieces.push(Piece::Text(before.to_owned()));
        }
        let body_start = open + 2 + usize::from(trim_left);
        let Some(close) = find_close(&rest[body_start..]) else {
            return Err(position_error(
                name,
                text,
                offset + open,
                "unclosed action".into(),
            ));
        };
        let mut body = &rest[body_start..body_start + close];
        trim_next_text = body.ends_with(" -") || body.ends_with("\t-") || body.ends_with("\n-");
        if trim_next_text {
            body = &body[..body.len() - 1];
        }
        pieces.push(Piece::Action {
            body: body.to_owned(),
            offset: offset + body_start,
        });
        let consumed = body_start + close + 2;
        offset += consumed;
        rest = &rest[consumed..];
    }
    let tail = if trim_next_text {
        rest.trim_start()
    } else {
        rest
    };
    if !tail.is_empty() {
        pieces.push(Piece::Text(tail.to_owned()));
    }
    Ok(pieces)
}

/// The end of an action's body (`}}`), skipping quoted strings.
fn find_close(body: &str) -> Option<usize> {
    let bytes = body.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    if bytes[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'`' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'`' {
                    i += 1;
                }
            }
            b'}' if bytes.get(i + 1) == Some(&b'}') => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

fn position_error(name: &str, text: &str, offset: usize, message: String) -> TemplateError {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    TemplateError {
        name: name.to_owned(),
        line,
        column,
        message,
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Field(Vec<String>),
    Variable(String, Vec<String>),
    Str(String),
    Number(String),
    Pipe,
    Open,
    Close(Vec<String>),
    Declare,
    Comma,
    Dot,
}

fn tokenize(body: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = body.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    let fields = |chars: &[char], i: &mut usize| -> Vec<String> {
        let mut out = Vec::new();
        while *i < chars.len() && chars[*i] == '.' {
            let start = *i + 1;
            let mut end = start;
            while end < chars.len() && (chars[end].is_alphanumeric() || chars[end] == '_') {
                end += 1;
            }
            if end == start {
                break;
            }
            out.push(chars[start..end].iter().collect());
            *i = end;
        }
        out
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' | '\n' | '\r' => i += 1,
            '|' => {
                tokens.push(Token::Pipe);
                i += 1;
            }
            '(' => {
                tokens.push(Token::Open);
                i += 1;
            }
            ')' => {
                i += 1;
                let chain = fields(&chars, &mut i);
                tokens.push(Token::Close(chain));
            }
            ',' => {
                tokens.push(Token::Comma);
                i += 1;
            }
            ':' if chars.get(i + 1) == Some(&'=') => {
                tokens.push(Token::Declare);
                i += 2;
            }
            '=' => return Err("assignment to variables is not supported".into()),
            '"' => {
                let mut s = String::new();
                i += 1;
                loop {
                    let Some(&c) = chars.get(i) else {
                        return Err("unterminated quoted string".into());
                    };
                    i += 1;
                    match c {
                        '"' => break,
                        '\\' => {
                            let Some(&e) = chars.get(i) else {
                                return Err("unterminated quoted string".into());
                            };
                            i += 1;
                            s.push(match e {
                                'n' => '\n',
                                't' => '\t',
                                'r' => '\r',
                                '\\' => '\\',
                                '"' => '"',
                                '\'' => '\'',
                                other => return Err(format!("unknown escape sequence \\{other}")),
                            });
                        }
                        c => s.push(c),
                    }
                }
                tokens.push(Token::Str(s));
            }
            '`' => {
                let start = i + 1;
                let Some(len) = chars[start..].iter().position(|c| *c == '`') else {
                    return Err("unterminated raw quoted string".into());
                };
                tokens.push(Token::Str(chars[start..start + len].iter().collect()));
                i = start + len + 1;
            }
            '.' => {
                if chars.get(i + 1).is_some_and(|c| c.is_ascii_digit()) {
                    let start = i;
                    i += 1;
                    while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                        i += 1;
                    }
                    tokens.push(Token::Number(chars[start..i].iter().collect()));
                } else {
                    let chain = fields(&chars, &mut i);
                    if chain.is_empty() {
                        i += 1;
                        tokens.push(Token::Dot);
                    } else {
                        tokens.push(Token::Field(chain));
                    }
                }
            }
            '$' => {
                let start = i;
                i += 1;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                let name: String = chars[start..i].iter().collect();
                let chain = fields(&chars, &mut i);
                tokens.push(Token::Variable(name, chain));
            }
            c if c.is_ascii_digit()
                || ((c == '-' || c == '+')
                    && chars
                        .get(i + 1)
                        .is_some_and(|d| d.is_ascii_digit() || *d == '.')) =>
            {
                let start = i;
                i += 1;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric()
                        || chars[i] == '.'
                        || ((chars[i] == '-' || chars[i] == '+')
                            && matches!(chars[i - 1], 'e' | 'E')))
                {
                    i += 1;
                }
                tokens.push(Token::Number(chars[start..i].iter().collect()));
            }
            c if c.is_alphabetic() || c == '_' => {
                let start = i;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                tokens.push(Token::Ident(chars[start..i].iter().collect()));
            }
            other => return Err(format!("unexpected {other:?} in command")),
        }
    }
    Ok(tokens)
}

// ---------------------------------------------------------------------------------------------
// Parsing.

struct End {
    keyword: String,
    rest: Vec<Token>,
    offset: usize,
}

struct Parser<'a> {
    name: &'a str,
    text: &'a str,
    pieces: Vec<Piece>,
    pos: usize,
    scopes: Vec<Vec<String>>,
}

impl Parser<'_> {
    fn error(&self, offset: usize, message: String) -> TemplateError {
        position_error(self.name, self.text, offset, message)
    }

    /// Nodes up to an `else`/`end` (returned) or the end of the text.
    fn nodes(&mut self) -> Result<(Vec<Node>, Option<End>), TemplateError> {
        let mut nodes = Vec::new();
        while self.pos < self.pieces.len() {
            let piece = &self.pieces[self.pos];
            self.pos += 1;
            let (body, offset) = match piece {
                Piece::Text(text) => {
                    nodes.push(Node::Text(text.clone()));
                    continue;
                }
                Piece::Action { body, offset } => (body.clone(), *offset),
            };
            let trimmed = body.trim();
            if trimmed.starts_with("/*") {
                if !trimmed.ends_with("*/") {
                    return Err(self.error(offset, "unclosed comment".into()));
                }
                continue;
            }
            let tokens = tokenize(&body).map_err(|m| self.error(offset, m))?;
            match tokens.first() {
                Some(Token::Ident(k)) if k == "end" || k == "else" => {
                    return Ok((
                        nodes,
                        Some(End {
                            keyword: k.clone(),
                            rest: tokens[1..].to_vec(),
                            offset,
                        }),
                    ));
                }
                Some(Token::Ident(k)) if k == "if" => {
                    let node = self.if_node(tokens[1..].to_vec(), &body, offset)?;
                    nodes.push(node);
                }
                Some(Token::Ident(k)) if k == "range" => {
                    let node = self.range_node(tokens[1..].to_vec(), &body, offset)?;
                    nodes.push(node);
                }
                Some(Token::Ident(k))
                    if matches!(
                        k.as_str(),
                        "with" | "define" | "template" | "block" | "break" | "continue"
                    ) =>
                {
                    return Err(self.error(
                        offset,
                        format!("{{{{{k}}}}} is not supported in alert templates"),
                    ));
                }
                None => return Err(self.error(offset, "missing value for command".into())),
                _ => {
                    let pipeline = self.pipeline(tokens, &body, offset, true)?;
                    nodes.push(Node::Action(pipeline));
                }
            }
        }
        Ok((nodes, None))
    }

    fn if_node(
        &mut self,
        tokens: Vec<Token>,
        body: &str,
        offset: usize,
    ) -> Result<Node, TemplateError> {
        let mut branches = Vec::new();
        let mut condition = self.pipeline(tokens, body, offset, false)?;
        loop {
            self.scopes.push(Vec::new());
            let (nodes, end) = self.nodes()?;
            self.scopes.pop();
            branches.push((condition, nodes));
            let Some(end) = end else {
                return Err(self.error(offset, "unexpected EOF: missing {{end}}".into()));
            };
            if end.keyword == "end" {
                return Ok(Node::If {
                    branches,
                    otherwise: Vec::new(),
                });
            }
            match end.rest.first() {
                Some(Token::Ident(k)) if k == "if" => {
                    condition = self.pipeline(end.rest[1..].to_vec(), body, end.offset, false)?;
                }
                Some(_) => {
                    return Err(self.error(end.offset, "unexpected tokens after else".into()));
                }
                None => {
                    self.scopes.push(Vec::new());
                    let (otherwise, end) = self.nodes()?;
                    self.scopes.pop();
                    return match end {
                        Some(e) if e.keyword == "end" => Ok(Node::If {
                            branches,
                            otherwise,
                        }),
                        Some(e) => Err(self.error(e.offset, "expected {{end}}".into())),
                        None => Err(self.error(offset, "unexpected EOF: missing {{end}}".into())),
                    };
                }
            }
        }
    }

    fn range_node(
        &mut self,
        mut tokens: Vec<Token>,
        body: &str,
        offset: usize,
    ) -> Result<Node, TemplateError> {
        let (mut key, mut value) = (None, None);
        if let Some(decl) = tokens.iter().position(|t| *t == Token::Declare) {
            let names: Vec<String> = tokens[..decl]
                .iter()
                .filter_map(|t| match t {
                    Token::Variable(name, chain) if chain.is_empty() => Some(name.clone()),
                    _ => None,
                })
                .collect();
            match names.as_slice() {
                [v] => value = Some(v.clone()),
                [k, v] => {
                    key = Some(k.clone());
                    value = Some(v.clone());
                }
                _ => return Err(self.error(offset, "bad range declaration".into())),
            }
            tokens.drain(..=decl);
        }
        let pipeline = self.pipeline(tokens, body, offset, false)?;
        let mut scope = Vec::new();
        scope.extend(key.clone());
        scope.extend(value.clone());
        self.scopes.push(scope);
        let (nodes, end) = self.nodes()?;
        self.scopes.pop();
        let Some(end) = end else {
            return Err(self.error(offset, "unexpected EOF: missing {{end}}".into()));
        };
        let otherwise = if end.keyword == "else" {
            let (otherwise, end) = self.nodes()?;
            if end.is_none_or(|e| e.keyword != "end") {
                return Err(self.error(offset, "expected {{end}}".into()));
            }
            otherwise
        } else {
            Vec::new()
        };
        Ok(Node::Range {
            pipeline,
            key,
            value,
            body: nodes,
            otherwise,
        })
    }

    fn declared(&self, name: &str) -> bool {
        self.scopes.iter().any(|s| s.iter().any(|v| v == name))
    }

    fn pipeline(
        &mut self,
        mut tokens: Vec<Token>,
        body: &str,
        offset: usize,
        allow_declare: bool,
    ) -> Result<Pipeline, TemplateError> {
        let mut declare = None;
        if let [Token::Variable(name, chain), Token::Declare, ..] = tokens.as_slice() {
            if !allow_declare && !chain.is_empty() {
                return Err(self.error(offset, "bad declaration".into()));
            }
            declare = Some(name.clone());
            tokens.drain(..2);
        }
        let mut pos = 0;
        let pipeline = self.parse_pipeline(&tokens, &mut pos, offset, body)?;
        if pos != tokens.len() {
            return Err(self.error(offset, "unexpected \")\" in command".into()));
        }
        if let Some(name) = &declare
            && let Some(scope) = self.scopes.last_mut()
        {
            scope.push(name.clone());
        }
        Ok(Pipeline {
            declare,
            ..pipeline
        })
    }

    fn parse_pipeline(
        &self,
        tokens: &[Token],
        pos: &mut usize,
        offset: usize,
        body: &str,
    ) -> Result<Pipeline, TemplateError> {
        let mut commands = Vec::new();
        let mut operands = Vec::new();
        while *pos < tokens.len() {
            let token = &tokens[*pos];
            *pos += 1;
            let operand = match token {
                Token::Pipe => {
                    if operands.is_empty() {
                        return Err(self.error(offset, "missing command before |".into()));
                    }
                    commands.push(Command {
                        operands: std::mem::take(&mut operands),
                    });
                    continue;
                }
                Token::Close(_) => {
                    *pos -= 1;
                    break;
                }
                Token::Open => {
                    let inner = self.parse_pipeline(tokens, pos, offset, body)?;
                    let Some(Token::Close(chain)) = tokens.get(*pos) else {
                        return Err(self.error(offset, "unclosed left paren".into()));
                    };
                    *pos += 1;
                    Operand::Group(Box::new(inner), chain.clone())
                }
                Token::Ident(name) => match name.as_str() {
                    "true" => Operand::Bool(true),
                    "false" => Operand::Bool(false),
                    "nil" => Operand::Nil,
                    "query" | "first" | "label" | "value" | "strvalue" | "sortByLabel" | "args"
                    | "tmpl" | "graphLink" | "tableLink" => {
                        return Err(self.error(offset, format!("function {name:?} is not supported in this version (it needs a query engine in the template)")));
                    }
                    f if FUNCTIONS.contains(&f) => Operand::Function(f.to_owned()),
                    other => {
                        return Err(self.error(offset, format!("function {other:?} not defined")));
                    }
                },
                Token::Field(chain) => Operand::Dot(chain.clone()),
                Token::Dot => Operand::Dot(Vec::new()),
                Token::Variable(name, chain) => {
                    if !self.declared(name) {
                        return Err(self.error(offset, format!("undefined variable {name:?}")));
                    }
                    Operand::Variable(name.clone(), chain.clone())
                }
                Token::Str(s) => Operand::Str(s.clone()),
                Token::Number(text) => parse_number(text).map_err(|m| self.error(offset, m))?,
                Token::Declare | Token::Comma => {
                    return Err(self.error(offset, "unexpected token in command".into()));
                }
            };
            operands.push(operand);
        }
        if operands.is_empty() {
            return Err(self.error(offset, "missing value for command".into()));
        }
        commands.push(Command { operands });
        for command in &commands {
            if command.operands.len() > 1 && !matches!(command.operands[0], Operand::Function(_)) {
                return Err(self.error(offset, "can't give argument to non-function".into()));
            }
        }
        Ok(Pipeline {
            declare: None,
            commands,
            text: body.trim().to_owned(),
        })
    }
}

fn parse_number(text: &str) -> Result<Operand, String> {
    let int = if let Some(hex) = text.strip_prefix("0x") {
        i64::from_str_radix(hex, 16).ok()
    } else {
        text.parse::<i64>().ok()
    };
    let float = match int {
        Some(i) => i as f64,
        None => text
            .parse::<f64>()
            .map_err(|_| format!("bad number syntax: {text:?}"))?,
    };
    // Go: a constant with '.', 'e' or 'E' is a float; otherwise an int.
    let int = if text.contains(['.', 'e', 'E']) && !text.starts_with("0x") {
        None
    } else {
        int
    };
    Ok(Operand::Number { int, float })
}

// ---------------------------------------------------------------------------------------------
// Execution.

struct Exec {
    vars: Vec<(String, Val)>,
    dot: Val,
    out: String,
    data: Arc<TemplateData>,
}

impl Exec {
    fn run(&mut self, nodes: &[Node]) -> Result<(), String> {
        for node in nodes {
            match node {
                Node::Text(text) => self.out.push_str(text),
                Node::Action(pipeline) => {
                    let value = self.pipeline(pipeline)?;
                    if let Some(name) = &pipeline.declare {
                        self.vars.push((name.clone(), value));
                    } else {
                        let text = print(&value);
                        self.out.push_str(&text);
                    }
                }
                Node::If {
                    branches,
                    otherwise,
                } => {
                    let mut taken = false;
                    for (condition, body) in branches {
                        let value = self.pipeline(condition)?;
                        if truth(&value) {
                            self.scoped(|exec| exec.run(body))?;
                            taken = true;
                            break;
                        }
                    }
                    if !taken {
                        self.scoped(|exec| exec.run(otherwise))?;
                    }
                }
                Node::Range {
                    pipeline,
                    key,
                    value,
                    body,
                    otherwise,
                } => {
                    let map = match self.pipeline(pipeline)? {
                        Val::Map(map) => map,
                        Val::Nil => Arc::new(BTreeMap::new()),
                        other => return Err(format!("range can't iterate over {}", print(&other))),
                    };
                    if map.is_empty() {
                        self.scoped(|exec| exec.run(otherwise))?;
                    }
                    for (k, v) in map.iter() {
                        let saved_dot = std::mem::replace(&mut self.dot, Val::Str(v.clone()));
                        let depth = self.vars.len();
                        if let Some(key) = key {
                            self.vars.push((key.clone(), Val::Str(k.clone())));
                        }
                        if let Some(value) = value {
                            self.vars.push((value.clone(), Val::Str(v.clone())));
                        }
                        let result = self.run(body);
                        self.vars.truncate(depth);
                        self.dot = saved_dot;
                        result?;
                    }
                }
            }
        }
        Ok(())
    }

    fn scoped(&mut self, f: impl FnOnce(&mut Self) -> Result<(), String>) -> Result<(), String> {
        let depth = self.vars.len();
        let result = f(self);
        self.vars.truncate(depth);
        result
    }

    fn pipeline(&mut self, pipeline: &Pipeline) -> Result<Val, String> {
        let mut piped: Option<Val> = None;
        for command in &pipeline.commands {
            piped = Some(
                self.command(command, piped.take())
                    .map_err(|e| format!("executing at <{}>: {e}", pipeline.text))?,
            );
        }
        Ok(piped.unwrap_or(Val::Nil))
    }

    fn command(&mut self, command: &Command, piped: Option<Val>) -> Result<Val, String> {
        match &command.operands[0] {
            Operand::Function(name) => {
                if name == "and" || name == "or" {
                    // Short-circuit, as Go 1.18+ does: the first falsy (and) or truthy (or) argument.
                    let mut last = Val::Nil;
                    let args = &command.operands[1..];
                    let total = args.len() + usize::from(piped.is_some());
                    if total == 0 {
                        return Err(format!(
                            "wrong number of args for {name}: want at least 1 got 0"
                        ));
                    }
                    for arg in args {
                        last = self.operand(arg)?;
                        if truth(&last) == (name == "or") {
                            return Ok(last);
                        }
                    }
                    if let Some(p) = piped {
                        last = p;
                    }
                    return Ok(last);
                }
                let mut args = Vec::with_capacity(command.operands.len());
                for arg in &command.operands[1..] {
                    args.push(self.operand(arg)?);
                }
                args.extend(piped);
                call(name, &args, &self.data).map_err(|e| format!("error calling {name}: {e}"))
            }
            operand => {
                if piped.is_some() {
                    return Err("can't give argument to non-function".into());
                }
                self.operand(operand)
            }
        }
    }

    fn operand(&mut self, operand: &Operand) -> Result<Val, String> {
        match operand {
            Operand::Function(name) => {
                call(name, &[], &self.data).map_err(|e| format!("error calling {name}: {e}"))
            }
            Operand::Dot(chain) => fields(self.dot.clone(), chain),
            Operand::Variable(name, chain) => {
                let value = self
                    .vars
                    .iter()
                    .rev()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.clone())
                    .ok_or_else(|| format!("undefined variable: {name}"))?;
                fields(value, chain)
            }
            Operand::Str(s) => Ok(Val::Str(s.clone())),
            Operand::Number { int, float, .. } => Ok(match int {
                Some(i) => Val::Int(*i),
                None => Val::Float(*float),
            }),
            Operand::Bool(b) => Ok(Val::Bool(*b)),
            Operand::Nil => Ok(Val::Nil),
            Operand::Group(pipeline, chain) => {
                let value = self.pipeline(pipeline)?;
                fields(value, chain)
            }
        }
    }
}

fn fields(mut value: Val, chain: &[String]) -> Result<Val, String> {
    for field in chain {
        value = match value {
            Val::Map(map) => Val::Str(map.get(field).cloned().unwrap_or_default()),
            Val::Data(data) => match field.as_str() {
                "Labels" => Val::Map(Arc::clone(&data.labels)),
                "ExternalLabels" => Val::Map(Arc::clone(&data.external_labels)),
                "ExternalURL" => Val::Str(data.external_url.clone()),
                "Value" => Val::Float(data.value),
                other => {
                    return Err(format!(
                        "can't evaluate field {other} in type *template.tmplData"
                    ));
                }
            },
            Val::Nil => return Err(format!("nil pointer evaluating interface {{}}.{field}")),
            other => {
                return Err(format!(
                    "can't evaluate field {field} in type {}",
                    type_name(&other)
                ));
            }
        };
    }
    Ok(value)
}

fn type_name(value: &Val) -> &'static str {
    match value {
        Val::Str(_) => "string",
        Val::Float(_) => "float64",
        Val::Int(_) => "int",
        Val::Bool(_) => "bool",
        Val::Map(_) => "map[string]string",
        Val::Data(_) => "*template.tmplData",
        Val::Nil => "<nil>",
    }
}

fn truth(value: &Val) -> bool {
    match value {
        Val::Str(s) => !s.is_empty(),
        Val::Float(f) => *f != 0.0,
        Val::Int(i) => *i != 0,
        Val::Bool(b) => *b,
        Val::Map(m) => !m.is_empty(),
        Val::Data(_) => true,
        Val::Nil => false,
    }
}

/// Go's `%v`.
fn print(value: &Val) -> String {
    match value {
        Val::Str(s) => s.clone(),
        Val::Float(f) => gofmt::format_g(*f, None),
        Val::Int(i) => i.to_string(),
        Val::Bool(b) => b.to_string(),
        Val::Map(m) => {
            let pairs: Vec<String> = m.iter().map(|(k, v)| format!("{k}:{v}")).collect();
            format!("map[{}]", pairs.join(" "))
        }
        Val::Data(d) => format!(
            "{{{} {} {}}}",
            print(&Val::Map(Arc::clone(&d.labels))),
            d.external_url,
            gofmt::format_g(d.value, None)
        ),
        Val::Nil => "<no value>".into(),
    }
}

fn to_format_arg(value: &Val) -> FormatArg {
    match value {
        Val::Str(s) => FormatArg::Str(s.clone()),
        Val::Float(f) => FormatArg::Float(*f),
        Val::Int(i) => FormatArg::Int(*i),
        Val::Bool(b) => FormatArg::Bool(*b),
        other => FormatArg::Other(print(other), type_name(other)),
    }
}

/// Prometheus' `convertToFloat`.
fn to_float(value: &Val) -> Result<f64, String> {
    match value {
        Val::Float(f) => Ok(*f),
        Val::Int(i) => Ok(*i as f64),
        Val::Str(s) => s.parse::<f64>().or_else(|_| match s.as_str() {
            "NaN" => Ok(f64::NAN),
            "+Inf" | "Inf" => Ok(f64::INFINITY),
            "-Inf" => Ok(f64::NEG_INFINITY),
            _ => Err(format!("strconv.ParseFloat: parsing {s:?}: invalid syntax")),
        }),
        other => Err(format!("can't convert {} to float", type_name(other))),
    }
}

fn string_arg(value: &Val) -> Result<String, String> {
    match value {
        Val::Str(s) => Ok(s.clone()),
        other => Err(format!(
            "wrong type for value; expected string; got {}",
            type_name(other)
        )),
    }
}

fn want(name: &str, args: &[Val], n: usize) -> Result<(), String> {
    if args.len() == n {
        Ok(())
    } else {
        Err(format!(
            "wrong number of args for {name}: want {n} got {}",
            args.len()
        ))
    }
}

#[derive(PartialEq, PartialOrd)]
enum Basic<'a> {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(&'a str),
}

fn basic(value: &Val) -> Result<Basic<'_>, String> {
    match value {
        Val::Bool(b) => Ok(Basic::Bool(*b)),
        Val::Int(i) => Ok(Basic::Int(*i)),
        Val::Float(f) => Ok(Basic::Float(*f)),
        Val::Str(s) => Ok(Basic::Str(s)),
        _ => Err("invalid type for comparison".into()),
    }
}

fn compare(name: &str, a: &Val, b: &Val) -> Result<bool, String> {
    let (a, b) = (basic(a)?, basic(b)?);
    if std::mem::discriminant(&a) != std::mem::discriminant(&b) {
        return Err("incompatible types for comparison".into());
    }
    if matches!(a, Basic::Bool(_)) && !matches!(name, "eq" | "ne") {
        return Err("invalid type for comparison".into());
    }
    Ok(match name {
        "eq" => a == b,
        "ne" => a != b,
        "lt" => a < b,
        "le" => a <= b,
        "gt" => a > b,
        _ => a >= b,
    })
}

fn call(name: &str, args: &[Val], data: &TemplateData) -> Result<Val, String> {
    let float = |args: &[Val]| -> Result<f64, String> {
        want(name, args, 1)?;
        to_float(&args[0])
    };
    let text = |args: &[Val]| -> Result<String, String> {
        want(name, args, 1)?;
        string_arg(&args[0])
    };
    Ok(match name {
        "not" => {
            want(name, args, 1)?;
            Val::Bool(!truth(&args[0]))
        }
        "eq" => {
            if args.len() < 2 {
                return Err("missing argument for comparison".into());
            }
            let mut any = false;
            for other in &args[1..] {
                any |= compare("eq", &args[0], other)?;
            }
            Val::Bool(any)
        }
        "ne" | "lt" | "le" | "gt" | "ge" => {
            want(name, args, 2)?;
            Val::Bool(compare(name, &args[0], &args[1])?)
        }
        "len" => {
            want(name, args, 1)?;
            Val::Int(match &args[0] {
                Val::Str(s) => s.len() as i64,
                Val::Map(m) => m.len() as i64,
                other => return Err(format!("len of type {}", type_name(other))),
            })
        }
        "index" => {
            want(name, args, 2)?;
            match (&args[0], &args[1]) {
                (Val::Map(m), Val::Str(k)) => Val::Str(m.get(k).cloned().unwrap_or_default()),
                (other, _) => return Err(format!("can't index item of type {}", type_name(other))),
            }
        }
        "print" | "println" => {
            let mut out = String::new();
            for (i, arg) in args.iter().enumerate() {
                let is_str = matches!(arg, Val::Str(_));
                let prev_str = i > 0 && matches!(args[i - 1], Val::Str(_));
                if i > 0 && (name == "println" || (!is_str && !prev_str)) {
                    out.push(' ');
                }
                out.push_str(&print(arg));
            }
            if name == "println" {
                out.push('\n');
            }
            Val::Str(out)
        }
        "printf" => {
            let Some(format) = args.first() else {
                return Err("wrong number of args for printf: want at least 1 got 0".into());
            };
            let format = string_arg(format)?;
            let rest: Vec<FormatArg> = args[1..].iter().map(to_format_arg).collect();
            Val::Str(gofmt::sprintf(&format, &rest))
        }
        "safeHtml" => Val::Str(text(args)?),
        "html" => {
            let s: String = args.iter().map(print).collect();
            Val::Str(
                s.replace('&', "&amp;")
                    .replace('<', "&lt;")
                    .replace('>', "&gt;")
                    .replace('"', "&#34;")
                    .replace('\'', "&#39;"),
            )
        }
        "js" => {
            let s: String = args.iter().map(print).collect();
            let mut out = String::new();
            for c in s.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '\'' => out.push_str("\\'"),
                    '"' => out.push_str("\\\""),
                    '<' => out.push_str("\\u003C"),
                    '>' => out.push_str("\\u003E"),
                    '&' => out.push_str("\\u0026"),
                    '=' => out.push_str("\\u003D"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    c => out.push(c),
                }
            }
            Val::Str(out)
        }
        "urlquery" => {
            let s: String = args.iter().map(print).collect();
            Val::Str(
                serde_urlencoded::to_string([("", s)])
                    .map_or_else(|_| String::new(), |q| q.trim_start_matches('=').to_owned()),
            )
        }
        "humanize" => Val::Str(humanize(float(args)?)),
        "humanize1024" => Val::Str(humanize1024(float(args)?)),
        "humanizePercentage" => Val::Str(format!(
            "{}%",
            gofmt::format_g(float(args)? * 100.0, Some(4))
        )),
        "humanizeDuration" => Val::Str(humanize_duration(float(args)?)),
        "humanizeTimestamp" => Val::Str(humanize_timestamp(float(args)?)),
        "toUpper" => Val::Str(text(args)?.to_uppercase()),
        "toLower" => Val::Str(text(args)?.to_lowercase()),
        "title" => Val::Str(title(&text(args)?)),
        "match" => {
            want(name, args, 2)?;
            let pattern = string_arg(&args[0])?;
            let subject = string_arg(&args[1])?;
            let re = regex::Regex::new(&pattern).map_err(|e| e.to_string())?;
            Val::Bool(re.is_match(&subject))
        }
        "reReplaceAll" => {
            want(name, args, 3)?;
            let pattern = string_arg(&args[0])?;
            let replacement = string_arg(&args[1])?;
            let subject = string_arg(&args[2])?;
            let re = regex::Regex::new(&pattern).map_err(|e| e.to_string())?;
            Val::Str(re.replace_all(&subject, replacement.as_str()).into_owned())
        }
        "stripPort" => {
            let hostport = text(args)?;
            Val::Str(strip_port(&hostport))
        }
        "pathPrefix" => Val::Str(String::new()),
        "externalURL" => Val::Str(data.external_url.clone()),
        "parseDuration" => {
            let d = promql_parser::util::parse_duration(&text(args)?)?;
            Val::Float(d.as_secs_f64())
        }
        other => return Err(format!("function {other:?} not defined")),
    })
}

/// Prometheus' `humanize`: SI prefixes, four significant digits.
pub fn humanize(mut v: f64) -> String {
    if v == 0.0 || v.is_nan() || v.is_infinite() {
        return gofmt::format_g(v, Some(4));
    }
    let mut prefix = "";
    if v.abs() >= 1.0 {
        for p in ["k", "M", "G", "T", "P", "E", "Z", "Y"] {
            if v.abs() < 1000.0 {
                break;
            }
            prefix = p;
            v /= 1000.0;
        }
    } else {
        for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
            if v.abs() >= 1.0 {
                break;
            }
            prefix = p;
            v *= 1000.0;
        }
    }
    format!("{}{prefix}", gofmt::format_g(v, Some(4)))
}

fn humanize1024(mut v: f64) -> String {
    if v.abs() <= 1.0 || v.is_nan() || v.is_infinite() {
        return gofmt::format_g(v, Some(4));
    }
    let mut prefix = "";
    for p in ["ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"] {
        if v.abs() < 1024.0 {
            break;
        }
        prefix = p;
        v /= 1024.0;
    }
    format!("{}{prefix}", gofmt::format_g(v, Some(4)))
}

fn humanize_duration(mut v: f64) -> String {
    if v.is_nan() || v.is_infinite() {
        return gofmt::format_g(v, Some(4));
    }
    if v == 0.0 {
        return format!("{}s", gofmt::format_g(v, Some(4)));
    }
    if v.abs() >= 1.0 {
        let sign = if v < 0.0 { "-" } else { "" };
        v = v.abs();
        let duration = v as i64;
        let seconds = duration % 60;
        let minutes = (duration / 60) % 60;
        let hours = (duration / 60 / 60) % 24;
        let days = duration / 60 / 60 / 24;
        if days != 0 {
            return format!("{sign}{days}d {hours}h {minutes}m {seconds}s");
        }
        if hours != 0 {
            return format!("{sign}{hours}h {minutes}m {seconds}s");
        }
        if minutes != 0 {
            return format!("{sign}{minutes}m {seconds}s");
        }
        return format!("{sign}{}s", gofmt::format_g(v, Some(4)));
    }
    let mut prefix = "";
    for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
        if v.abs() >= 1.0 {
            break;
        }
        prefix = p;
        v *= 1000.0;
    }
    format!("{}{prefix}s", gofmt::format_g(v, Some(4)))
}

/// Go's `time.Time.String()` in UTC: `2006-01-02 15:04:05.999999999 +0000 UTC`.
fn humanize_timestamp(v: f64) -> String {
    if v.is_nan() || v.is_infinite() {
        return gofmt::format_g(v, Some(4));
    }
    let nanos = (v * 1e9) as i128;
    let Ok(time) = time::OffsetDateTime::from_unix_timestamp_nanos(nanos) else {
        return gofmt::format_g(v, Some(4));
    };
    let mut out = format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        time.year(),
        u8::from(time.month()),
        time.day(),
        time.hour(),
        time.minute(),
        time.second()
    );
    let fraction = time.nanosecond();
    if fraction != 0 {
        let digits = format!("{fraction:09}");
        let _ = write!(out, ".{}", digits.trim_end_matches('0'));
    }
    out.push_str(" +0000 UTC");
    out
}

/// Go's deprecated `strings.Title`: upper-case the first letter of each word.
fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut previous: Option<char> = None;
    for c in s.chars() {
        let boundary = previous.is_none_or(|p| !(p.is_alphanumeric() || p == '_' || p == '\''));
        if boundary {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        previous = Some(c);
    }
    out
}

fn strip_port(hostport: &str) -> String {
    if let Some(rest) = hostport.strip_prefix('[')
        && let Some((host, port)) = rest.split_once("]:")
        && !port.contains(':')
    {
        return host.to_owned();
    }
    match hostport.rsplit_once(':') {
        Some((host, _)) if !host.contains(':') && !host.is_empty() => host.to_owned(),
        _ => hostport.to_owned(),
    }
}

#[cfg(test)]
mod tests;
