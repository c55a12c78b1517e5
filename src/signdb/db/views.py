"""The analysts' views as the head revision defines them: the one place to read them in code.

Revisions keep their own frozen copy of every view they create (a landed
revision never changes), and ``signdb db check`` compares the database's views
with these definitions, so a revision that forgets to update a view, or a
change here without a revision, is caught (``tests/db/test_migrations.py``).
"""

from __future__ import annotations

#: name -> the SELECT that defines ``signdb.<name>``, in dependency order.
VIEWS: dict[str, str] = {
    "learning_curves": """
    SELECT m.run_id, r.name AS run_name, r.model, m.step, m.name AS metric, m.value, m.recorded_at
    FROM signdb.run_metrics m
    JOIN signdb.runs r ON r.id = m.run_id""",
    "confusion": """
    SELECT p.run_id, p.split, p.label AS actual, p.predicted, count(*) AS count,
           ca.name AS actual_name, cp.name AS predicted_name
    FROM signdb.predictions p
    JOIN signdb.runs r ON r.id = p.run_id
    LEFT JOIN signdb.classes ca ON ca.dataset_id = r.dataset_id AND ca.label = p.label
    LEFT JOIN signdb.classes cp ON cp.dataset_id = r.dataset_id AND cp.label = p.predicted
    GROUP BY p.run_id, p.split, p.label, p.predicted, ca.name, cp.name""",
    "run_summary": """
    SELECT
        r.id AS run_id,
        r.name,
        d.name AS dataset,
        r.dataset_id,
        r.model,
        r.classes,
        r.hyperparams,
        r.seed,
        r.test_fraction,
        signdb.effective_status(r.status, r.heartbeat_at) AS status,
        r.error,
        r.started_at,
        r.finished_at,
        r.finished_at - r.started_at AS duration,
        r.steps_done,
        r.total_steps,
        r.train_size,
        r.test_size,
        r.dataset_fingerprint,
        r.code_version,
        (SELECT m.value FROM signdb.run_metrics m
          WHERE m.run_id = r.id AND m.name = 'cost' ORDER BY m.step DESC LIMIT 1) AS final_cost,
        r.train_accuracy,
        r.test_accuracy,
        (SELECT max(m.value) FROM signdb.run_metrics m
          WHERE m.run_id = r.id AND m.name = 'test_accuracy') AS best_test_accuracy,
        r.test_precision,
        r.test_recall,
        r.test_f1,
        r.engine,
        r.val_fraction,
        r.split,
        r.val_size,
        r.val_accuracy,
        (SELECT max(m.value) FROM signdb.run_metrics m
          WHERE m.run_id = r.id AND m.name = 'val_accuracy') AS best_val_accuracy,
        (SELECT array_agg(c.name ORDER BY c.label) FROM signdb.classes c
          WHERE c.dataset_id = r.dataset_id AND c.label = ANY(r.classes)) AS class_names,
        r.test_accuracy_low,
        r.test_accuracy_high
    FROM signdb.runs r
    JOIN signdb.datasets d ON d.id = r.dataset_id""",
    "leaderboard": """
    SELECT
        rank() OVER (PARTITION BY s.dataset_id, s.classes
                     ORDER BY s.test_f1 DESC, s.test_accuracy DESC NULLS LAST, s.run_id) AS rank,
        s.dataset,
        s.classes,
        s.run_id,
        s.name,
        s.model,
        s.hyperparams,
        s.seed,
        s.test_accuracy,
        s.test_precision,
        s.test_recall,
        s.test_f1,
        s.finished_at,
        s.test_accuracy_low,
        s.test_accuracy_high
    FROM signdb.run_summary s
    WHERE s.status = 'succeeded' AND s.test_f1 IS NOT NULL""",
    "run_scores": """
    SELECT s.run_id, s.split, s.metric, s.value, s.ci_low, s.ci_high,
           d.name AS dataset, r.model
    FROM signdb.score_values s
    JOIN signdb.runs r ON r.id = s.run_id
    JOIN signdb.datasets d ON d.id = r.dataset_id""",
    "class_scores": """
    SELECT v.run_id, v.split, v.label, c.name AS class_name, v.metric, v.value
    FROM signdb.class_score_values v
    JOIN signdb.runs r ON r.id = v.run_id
    LEFT JOIN signdb.classes c ON c.dataset_id = r.dataset_id AND c.label = v.label""",
    "class_curves": """
    SELECT v.run_id, v.split, v.label, c.name AS class_name, (p.point - 1)::integer AS point,
           p.threshold, p.tp, p.fp, v.negatives - p.fp AS tn, v.positives - p.tp AS fn,
           p.fp::double precision / NULLIF(v.negatives, 0) AS fpr,
           p.tp::double precision / NULLIF(v.positives, 0) AS tpr,
           p.tp::double precision / NULLIF(v.positives, 0) AS recall,
           p.tp::double precision / NULLIF(p.tp + p.fp, 0) AS precision
    FROM signdb.curves v
    CROSS JOIN LATERAL unnest(v.thresholds, v.tp, v.fp)
        WITH ORDINALITY AS p(threshold, tp, fp, point)
    JOIN signdb.runs r ON r.id = v.run_id
    LEFT JOIN signdb.classes c ON c.dataset_id = r.dataset_id AND c.label = v.label""",
    "calibration": """
    SELECT b.run_id, b.split, b.bin, b.bin / 15.0::double precision AS confidence_low,
           (b.bin + 1) / 15.0::double precision AS confidence_high, b.images,
           b.mean_confidence, b.accuracy
    FROM signdb.calibration_bins b""",
    "sweep_trials": """
    SELECT
        s.name AS sweep,
        t.number AS trial_number,
        t.state::text AS state,
        t.state::text = 'PRUNED' AS pruned,
        coalesce(p.params, '{}'::jsonb) AS params,
        v.value AS objective,
        s.objective AS objective_name,
        (SELECT a.value_json::jsonb FROM optuna.trial_system_attributes a
          WHERE a.trial_id = t.trial_id AND a.key = 'failed_trial') AS retry_of,
        t.datetime_start AT TIME ZONE 'UTC' AS started_at,
        t.datetime_complete AT TIME ZONE 'UTC' AS completed_at,
        r.id AS run_id,
        r.sweep_repeat AS repeat,
        r.seed,
        signdb.effective_status(r.status, r.heartbeat_at) AS run_status,
        CASE s.objective WHEN 'val_f1' THEN r.val_f1 ELSE r.val_accuracy END AS run_objective,
        r.val_accuracy,
        r.val_precision,
        r.val_recall,
        r.val_f1,
        r.test_accuracy,
        r.test_precision,
        r.test_recall,
        r.test_f1
    FROM signdb.sweeps s
    JOIN optuna.studies st ON st.study_name = s.name
    JOIN optuna.trials t ON t.study_id = st.study_id
    LEFT JOIN optuna.trial_values v ON v.trial_id = t.trial_id AND v.objective = 0
    LEFT JOIN LATERAL (
        SELECT jsonb_object_agg(
                   tp.param_name,
                   CASE tp.distribution_json::jsonb ->> 'name'
                       WHEN 'CategoricalDistribution' THEN
                           ((tp.distribution_json::jsonb -> 'attributes' -> 'choices')
                             ->> tp.param_value::integer)::jsonb
                       WHEN 'IntDistribution' THEN to_jsonb(tp.param_value::bigint)
                       ELSE to_jsonb(tp.param_value)
                   END) AS params
        FROM optuna.trial_params tp WHERE tp.trial_id = t.trial_id
    ) p ON true
    LEFT JOIN signdb.runs r ON r.sweep = s.name AND r.trial_number = t.number""",
    "sweep_summary": """
    SELECT
        sweep,
        params,
        count(DISTINCT trial_number) AS trials,
        count(run_id) AS runs,
        avg(run_objective) AS objective_mean,
        stddev_samp(run_objective) AS objective_sd,
        avg(val_accuracy) AS val_accuracy_mean,
        stddev_samp(val_accuracy) AS val_accuracy_sd,
        avg(val_precision) AS val_precision_mean,
        stddev_samp(val_precision) AS val_precision_sd,
        avg(val_recall) AS val_recall_mean,
        stddev_samp(val_recall) AS val_recall_sd,
        avg(val_f1) AS val_f1_mean,
        stddev_samp(val_f1) AS val_f1_sd,
        avg(test_accuracy) AS test_accuracy_mean,
        stddev_samp(test_accuracy) AS test_accuracy_sd,
        avg(test_precision) AS test_precision_mean,
        stddev_samp(test_precision) AS test_precision_sd,
        avg(test_recall) AS test_recall_mean,
        stddev_samp(test_recall) AS test_recall_sd,
        avg(test_f1) AS test_f1_mean,
        stddev_samp(test_f1) AS test_f1_sd
    FROM signdb.sweep_trials
    WHERE state = 'COMPLETE' AND run_status = 'succeeded'
    GROUP BY sweep, params""",
    "model_alias_history": """
    SELECT e.alias, e.run_id, e.previous_run_id, e.changed_by, e.changed_at,
           r.model, r.engine, d.name AS dataset, e.id AS event_id
    FROM signdb.model_alias_events e
    LEFT JOIN signdb.runs r ON r.id = e.run_id
    LEFT JOIN signdb.datasets d ON d.id = r.dataset_id""",
    "served_hourly": """
    SELECT p.model, p.run_id, p.hour,
           sum(p.predictions)::bigint AS predictions,
           sum(p.confidence_sum) / sum(p.predictions) AS mean_confidence,
           sum(p.latency_sum) / sum(p.predictions) AS mean_latency_ms,
           jsonb_object_agg(coalesce(c.name, p.predicted::text), p.predictions) AS class_counts,
           jsonb_object_agg(coalesce(c.name, p.predicted::text),
                            p.predictions::double precision / p.total) AS class_mix
    FROM (SELECT s.model, s.run_id, date_trunc('hour', s.served_at) AS hour, s.predicted,
                 count(*) AS predictions,
                 sum(count(*)) OVER (PARTITION BY s.model, s.run_id,
                                     date_trunc('hour', s.served_at))::double precision AS total,
                 sum(s.confidence::double precision) AS confidence_sum,
                 sum(s.latency_ms::double precision) AS latency_sum
          FROM signdb.served_predictions s
          GROUP BY s.model, s.run_id, date_trunc('hour', s.served_at), s.predicted) p
    LEFT JOIN signdb.runs r ON r.id = p.run_id
    LEFT JOIN signdb.classes c ON c.dataset_id = r.dataset_id AND c.label = p.predicted
    GROUP BY p.model, p.run_id, p.hour""",
}
