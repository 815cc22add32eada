//! The pipeline's table graph: who reads whom, in what order tables can be built.

use std::collections::{BTreeSet, HashMap};

use crate::ast::{Layer, Pipeline, Statement, WriteMode};
use crate::diagnostic::{Diagnostic, did_you_mean};
use crate::error::{LanguageError, Result};
use crate::source::{SourceSpan, Sources};

/// Statements as nodes, each with the statements it reads.
#[derive(Debug)]
pub struct Graph {
    upstream: Vec<Vec<usize>>,
}

impl Graph {
    /// Resolves every table a query reads and rejects duplicates, unknown tables,
    /// reads against the layer order, and cycles.
    pub fn resolve(pipeline: &Pipeline, sources: &Sources) -> Result<Graph> {
        let mut problems = Vec::new();
        let mut index = HashMap::new();
        for (position, statement) in pipeline.statements.iter().enumerate() {
            if let Some(&first) = index.get(statement.name()) {
                let first: &Statement = &pipeline.statements[first];
                problems.push(
                    Diagnostic::error(
                        format!("table {} is declared twice", statement.name()),
                        Some(statement.name_span()),
                    )
                    .with_help(format!(
                        "first declared at {}",
                        first.name_span().location(sources)
                    )),
                );
            } else {
                index.insert(statement.name().clone(), position);
            }
        }
        let names: Vec<String> = pipeline
            .statements
            .iter()
            .map(|s| s.name().to_string())
            .collect();

        let mut upstream = vec![Vec::new(); pipeline.statements.len()];
        for (position, statement) in pipeline.statements.iter().enumerate() {
            for read in statement.reads() {
                let written = read.to_string();
                let resolved = read.table_name().and_then(|name| index.get(&name));
                let Some(&target) = resolved else {
                    let by_name = read.parts.last().and_then(|last| {
                        names
                            .iter()
                            .find(|name| name.rsplit('.').next() == Some(last.as_str()))
                    });
                    let suggestion = by_name
                        .map(String::as_str)
                        .or_else(|| did_you_mean(&written, names.iter().map(String::as_str)));
                    let mut problem = Diagnostic::error(
                        match suggestion {
                            Some(name) => format!("unknown table {written} — did you mean {name}?"),
                            None => format!("unknown table {written}"),
                        },
                        Some(read.span),
                    );
                    if read.parts.len() != 2 {
                        problem = problem.with_help("pipeline tables are named <layer>.<name>");
                    }
                    problems.push(problem);
                    continue;
                };
                if let Some(problem) =
                    layer_order(statement, &pipeline.statements[target], read.span)
                {
                    problems.push(problem);
                    continue;
                }
                if read.stream
                    && let Some(problem) = stream_read(
                        statement,
                        &pipeline.statements[target],
                        read.span,
                        read.changes,
                    )
                {
                    problems.push(problem);
                }
                if !upstream[position].contains(&target) {
                    upstream[position].push(target);
                }
            }
        }
        for statement in &pipeline.statements {
            problems.extend(streams_of_one_table(statement));
        }
        if !problems.is_empty() {
            return Err(LanguageError::Invalid(problems));
        }
        let graph = Graph { upstream };
        if let Some(cycle) = graph.find_cycle() {
            let names: Vec<String> = cycle
                .iter()
                .map(|&node| pipeline.statements[node].name().to_string())
                .collect();
            return Err(LanguageError::Invalid(vec![
                Diagnostic::error(
                    format!("cycle: {}", names.join(" → ")),
                    Some(pipeline.statements[cycle[0]].name_span()),
                )
                .with_help("a table cannot read, directly or not, from itself"),
            ]));
        }
        Ok(graph)
    }

    /// The statements a statement reads directly.
    pub fn upstream(&self, node: usize) -> &[usize] {
        &self.upstream[node]
    }

    /// Every node after all of its upstreams; ties keep declaration order, so runs are repeatable.
    pub fn order(&self) -> Vec<usize> {
        let mut done = vec![false; self.upstream.len()];
        let mut order = Vec::with_capacity(self.upstream.len());
        while order.len() < self.upstream.len() {
            let ready: Vec<usize> = (0..self.upstream.len())
                .filter(|&node| !done[node] && self.upstream[node].iter().all(|&up| done[up]))
                .collect();
            for node in ready {
                done[node] = true;
                order.push(node);
            }
        }
        order
    }

    /// The named nodes and everything they read, transitively (for `--select`).
    pub fn with_upstreams(&self, nodes: &[usize]) -> BTreeSet<usize> {
        let mut selected = BTreeSet::new();
        let mut stack = nodes.to_vec();
        while let Some(node) = stack.pop() {
            if selected.insert(node) {
                stack.extend(&self.upstream[node]);
            }
        }
        selected
    }

    /// A cycle as a path that starts and ends at the same node, if there is one.
    fn find_cycle(&self) -> Option<Vec<usize>> {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            New,
            Open,
            Done,
        }
        fn visit(
            graph: &Graph,
            node: usize,
            marks: &mut [Mark],
            path: &mut Vec<usize>,
        ) -> Option<Vec<usize>> {
            marks[node] = Mark::Open;
            path.push(node);
            for &next in &graph.upstream[node] {
                match marks[next] {
                    Mark::Open => {
                        let start = path.iter().position(|&n| n == next).unwrap_or(0);
                        // Reads point upstream: reverse for data-flow order, and start
                        // at the first-declared table so the message is stable.
                        let mut cycle: Vec<usize> = path[start..].iter().rev().copied().collect();
                        let first = (0..cycle.len()).min_by_key(|&i| cycle[i]).unwrap_or(0);
                        cycle.rotate_left(first);
                        cycle.push(cycle[0]);
                        return Some(cycle);
                    }
                    Mark::New => {
                        if let Some(cycle) = visit(graph, next, marks, path) {
                            return Some(cycle);
                        }
                    }
                    Mark::Done => {}
                }
            }
            path.pop();
            marks[node] = Mark::Done;
            None
        }
        let mut marks = vec![Mark::New; self.upstream.len()];
        (0..self.upstream.len()).find_map(|node| {
            (marks[node] == Mark::New)
                .then(|| visit(self, node, &mut marks, &mut Vec::new()))
                .flatten()
        })
    }
}

/// `STREAM(t)` reads the rows `t` added since the reader's last build: `t` must only
/// grow, and the reader must add them to what it built rather than replace it.
fn stream_read(
    reader: &Statement,
    read: &Statement,
    span: SourceSpan,
    changes: bool,
) -> Option<Diagnostic> {
    let Statement::Table(table) = reader else {
        return None;
    };
    let word = if changes { "CHANGES" } else { "STREAM" };
    let problem = match read {
        Statement::Source(source) => Diagnostic::error(
            format!(
                "{} cannot read {word}({}): a raw table already reads only the landing files it has not ingested",
                table.name, source.name
            ),
            Some(span),
        )
        .with_help(format!("write FROM {}", source.name)),
        Statement::Table(upstream) if changes && upstream.name.layer == Layer::Raw => {
            Diagnostic::error(
                format!(
                    "CHANGES({}) reads a Delta table's change feed, but a raw table has none: it only grows",
                    upstream.name
                ),
                Some(span),
            )
            .with_help(format!("read its new rows: STREAM({})", upstream.name))
        }
        Statement::Table(upstream)
            if !changes
                && upstream.name.layer != Layer::Raw
                && upstream.mode != WriteMode::Append =>
        {
            Diagnostic::error(
                format!(
                    "STREAM({}) needs a table that only grows, but {} is written {}",
                    upstream.name,
                    upstream.name,
                    upstream.mode.keyword()
                ),
                Some(span),
            )
            .with_help(format!(
                "read it whole (FROM {}), or write it WRITE APPEND",
                upstream.name
            ))
        }
        Statement::Table(_) if table.mode == WriteMode::Replace => Diagnostic::error(
            format!(
                "{} reads a {word}, so it must add to what it built, but it is written REPLACE",
                table.name
            ),
            Some(span),
        )
        .with_help("write it WRITE APPEND, MERGE KEY (…) or SCD2 KEY (…) SEQUENCE BY …"),
        Statement::Table(_) => return None,
    };
    Some(problem)
}

/// A table reads at most one stream, and never the same table both as a stream and whole.
fn streams_of_one_table(statement: &Statement) -> Vec<Diagnostic> {
    let Statement::Table(table) = statement else {
        return Vec::new();
    };
    let Some(first) = table.stream() else {
        return Vec::new();
    };
    table
        .reads
        .iter()
        .filter(|read| read.span != first.span)
        .filter_map(|read| {
            if read.stream {
                Some(
                    Diagnostic::error(
                        format!(
                            "{} reads two streams, {first} and {read}; a table reads at most one",
                            table.name
                        ),
                        Some(read.span),
                    )
                    .with_help(format!("read {read} whole: FROM {read}")),
                )
            } else if read.parts == first.parts {
                Some(
                    Diagnostic::error(
                        format!(
                            "{} reads {read} both as STREAM({read}) and whole",
                            table.name
                        ),
                        Some(read.span),
                    )
                    .with_help("read it one way: the new rows, or all of them"),
                )
            } else {
                None
            }
        })
        .collect()
}

/// Data flows landing → raw → enriched → ranked; only raw tables read landing files.
fn layer_order(reader: &Statement, read: &Statement, span: SourceSpan) -> Option<Diagnostic> {
    let (from, to) = (reader.name().layer, read.name().layer);
    if to > from {
        return Some(Diagnostic::error(
            format!(
                "{} cannot read {}: layer {to} comes after layer {from}",
                reader.name(),
                read.name()
            ),
            Some(span),
        ));
    }
    if to == Layer::Landing && from != Layer::Raw {
        return Some(
            Diagnostic::error(
                format!(
                    "{} cannot read landing table {} directly",
                    reader.name(),
                    read.name()
                ),
                Some(span),
            )
            .with_help("land it in a raw table first, so each landing file is ingested once"),
        );
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parser::parse;

    fn resolve(text: &str) -> (Pipeline, Result<Graph>) {
        let mut sources = Sources::default();
        sources.add("pipeline.sql", text);
        let pipeline = parse(&sources).unwrap();
        let graph = Graph::resolve(&pipeline, &sources);
        (pipeline, graph)
    }

    fn messages(graph: Result<Graph>) -> Vec<String> {
        match graph {
            Err(LanguageError::Invalid(problems)) => problems
                .into_iter()
                .map(|problem| problem.message)
                .collect(),
            other => panic!("expected problems, got {other:?}"),
        }
    }

    #[test]
    fn tables_build_after_what_they_read() {
        let (pipeline, graph) = resolve(
            "CREATE TABLE ranked.r AS SELECT * FROM enriched.e;\n\
             CREATE TABLE enriched.e AS SELECT * FROM raw.w;\n\
             CREATE TABLE raw.w AS SELECT * FROM landing.l;\n\
             CREATE EXTERNAL TABLE landing.l STORED AS CSV LOCATION 'l/';",
        );
        let graph = graph.unwrap();
        let order: Vec<String> = graph
            .order()
            .into_iter()
            .map(|node| pipeline.statements[node].name().to_string())
            .collect();
        assert_eq!(order, ["landing.l", "raw.w", "enriched.e", "ranked.r"]);
        assert_eq!(graph.with_upstreams(&[1]).len(), 3);
    }

    #[test]
    fn unknown_tables_suggest_the_closest_name() {
        let (_, graph) = resolve(
            "CREATE TABLE enriched.jobs AS SELECT 1 AS id;\n\
             CREATE TABLE ranked.r AS SELECT * FROM enriched.job JOIN jobs USING (id);",
        );
        assert_eq!(
            messages(graph),
            [
                "unknown table enriched.job — did you mean enriched.jobs?",
                "unknown table jobs — did you mean enriched.jobs?"
            ]
        );
    }

    #[test]
    fn layers_are_read_in_order_and_cycles_are_refused() {
        let (_, graph) = resolve(
            "CREATE TABLE enriched.e AS SELECT * FROM ranked.r;\n\
             CREATE TABLE ranked.r AS SELECT * FROM enriched.e;",
        );
        assert_eq!(
            messages(graph),
            ["enriched.e cannot read ranked.r: layer ranked comes after layer enriched"]
        );
        let (_, graph) = resolve(
            "CREATE TABLE enriched.a AS SELECT * FROM enriched.b;\n\
             CREATE TABLE enriched.b AS SELECT * FROM enriched.a;",
        );
        assert_eq!(
            messages(graph),
            ["cycle: enriched.a → enriched.b → enriched.a"]
        );
    }
}
