"""SQL for the review stage: choosing records to review and reading them back with their source.

Filters are bound parameters (NULL = no filter); table, column and ORDER BY pieces come only from
the allow-lists below, keyed by record kind.
"""

from __future__ import annotations

# What each kind of record shows a reviewer, read from its own table.
SOURCES = {
    "preference": {
        "table": "preference_pairs",
        "columns": "s.id AS record_id, s.run_id, s.prompt, s.chosen, s.rejected, s.chosen_model, s.rejected_model, "
                   "s.judge_model, s.confidence, s.swap_agreement, s.chosen_score, s.rejected_score, "
                   "s.chosen_response_id, s.rejected_response_id, s.created_at",
        "priority": "coalesce(s.confidence, 0) - CASE WHEN s.swap_agreement = false THEN 1 ELSE 0 END",
        "filters": """($run_id IS NULL OR s.run_id = $run_id)
          AND ($model IS NULL OR s.chosen_model = $model OR s.rejected_model = $model)
          AND ($min_confidence IS NULL OR s.confidence >= $min_confidence)
          AND ($max_confidence IS NULL OR s.confidence <= $max_confidence)
          AND ($swap_disagreement IS NULL OR s.swap_agreement = NOT $swap_disagreement)""",
    },
    "sft": {
        "table": "sft_pairs",
        "columns": "s.id AS record_id, s.run_id, s.prompt, s.completion, s.model, s.confidence, s.score, "
                   "s.metadata->>'judge_model' AS judge_model, s.response_id, s.created_at",
        "priority": "coalesce(s.confidence, 0)",
        "filters": """($run_id IS NULL OR s.run_id = $run_id)
          AND ($model IS NULL OR s.model = $model)
          AND ($min_confidence IS NULL OR s.confidence >= $min_confidence)
          AND ($max_confidence IS NULL OR s.confidence <= $max_confidence)
          AND ($swap_disagreement IS NULL OR true)""",
    },
    "instruction": {
        "table": "instructions",
        "columns": "s.id AS record_id, s.run_id, s.text AS prompt, s.model, s.method, s.created_at",
        "priority": "0.0",
        "filters": """s.status = 'kept' AND ($run_id IS NULL OR s.run_id = $run_id)
          AND ($model IS NULL OR s.model = $model)
          AND ($min_confidence IS NULL OR true) AND ($max_confidence IS NULL OR true)
          AND ($swap_disagreement IS NULL OR true)""",
    },
    # A pair of two models' outputs for one prompt of a comparison (record id: the two output ids),
    # with the latest judge vote (LLM or rubric) on that pair as chosen (= model a) / rejected / tie / both bad.
    "comparison": {
        "table": """(
          SELECT a.id || '~' || b.id AS id, a.comparison_id, a.prompt_id, p.prompt, a.text AS chosen, b.text AS rejected,
                 a.model_id AS chosen_model, b.model_id AS rejected_model, a.id AS output_a_id, b.id AS output_b_id,
                 v.voter AS judge_model, a.created_at,
                 CASE WHEN v.winner IN ('tie', 'both_bad') THEN v.winner
                      WHEN v.winner IS NULL THEN NULL
                      WHEN (CASE v.winner WHEN 'a' THEN v.model_a ELSE v.model_b END) = a.model_id THEN 'chosen'
                      ELSE 'rejected' END AS judge_label
          FROM comparison_outputs a
          JOIN comparison_outputs b ON b.comparison_id = a.comparison_id AND b.prompt_id = a.prompt_id
                                   AND a.model_id < b.model_id
          JOIN comparison_prompts p ON p.id = a.prompt_id
          LEFT JOIN (SELECT * FROM votes WHERE voter_kind IN ('llm', 'rubric')
                     QUALIFY row_number() OVER (PARTITION BY prompt_id, least(model_a, model_b), greatest(model_a, model_b)
                                                ORDER BY created_at DESC, id) = 1) v
                 ON v.prompt_id = a.prompt_id AND least(v.model_a, v.model_b) = a.model_id
                AND greatest(v.model_a, v.model_b) = b.model_id)""",
        "columns": "s.id AS record_id, s.comparison_id AS run_id, s.comparison_id, s.prompt_id, s.prompt, s.chosen, "
                   "s.rejected, s.chosen_model, s.rejected_model, s.output_a_id, s.output_b_id, s.judge_model, "
                   "s.judge_label, NULL::DOUBLE AS confidence, s.created_at",
        "priority": "0.0",
        "filters": """($run_id IS NULL OR s.comparison_id = $run_id)
          AND ($model IS NULL OR s.chosen_model = $model OR s.rejected_model = $model)
          AND ($min_confidence IS NULL OR true) AND ($max_confidence IS NULL OR true)
          AND ($swap_disagreement IS NULL OR true)""",
    },
}
ORDERS = {"least_confident": "priority ASC, record_id", "newest": "created_at DESC, record_id"}

SELECT_CANDIDATES = """
SELECT {columns}, {priority} AS priority FROM {table} s
WHERE {filters}
ORDER BY {order}
LIMIT $limit
"""

# The round's records that still have to be sent, with what they show.
SELECT_UNPUSHED = """
SELECT r.id AS review_record_id, r.order_swapped, r.priority AS priority, {columns}
FROM review_records r JOIN {table} s ON s.id = r.record_id
WHERE r.round_id = $round_id AND r.pushed_at IS NULL
ORDER BY r.priority, r.id
"""

# Reconcile and agreement: every record of a round with its source's LLM label inputs.
SELECT_ROUND_RECORDS = """
SELECT r.id AS review_record_id, r.order_swapped, r.final_label AS current_final, r.final_rule AS current_rule,
       {columns}
FROM review_records r JOIN {table} s ON s.id = r.record_id
WHERE r.round_id = $round_id
ORDER BY r.id
"""

# Latest pointwise judgment per response: per-aspect scores for "agreement per rubric aspect".
SELECT_ASPECTS = """
SELECT response_id, aspect_scores FROM judgments
WHERE mode = 'pointwise' AND response_id IN (
    SELECT unnest([s.chosen_response_id, s.rejected_response_id])
    FROM review_records r JOIN preference_pairs s ON s.id = r.record_id WHERE r.round_id = $round_id)
QUALIFY row_number() OVER (PARTITION BY response_id ORDER BY created_at DESC) = 1
"""


def candidates_sql(kind: str, order: str) -> str:
    src = SOURCES[kind]
    return SELECT_CANDIDATES.format(columns=src["columns"], priority=src["priority"], table=src["table"],
                                    filters=src["filters"], order=ORDERS[order])


def unpushed_sql(kind: str) -> str:
    src = SOURCES[kind]
    return SELECT_UNPUSHED.format(columns=src["columns"], table=src["table"])


def round_records_sql(kind: str) -> str:
    src = SOURCES[kind]
    return SELECT_ROUND_RECORDS.format(columns=src["columns"], table=src["table"])
