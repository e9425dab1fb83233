/* test_conformance.c - the runtime against the ONNX backend node tests.
 *
 * Every $ONNX_TESTDATA/node/test_* whose model uses only ops of
 * runtime/ops.def runs on the runtime (NP_RT_INFER); each test_data_set_N
 * is one TAP line, outputs compared at |a-b| <= 1e-5 + 1e-4*|b| (NaN ==
 * NaN, integers exact).  A data set the runtime refuses (NP_ERR_UNSUPPORTED)
 * or the harness cannot feed is "# SKIP <why>" only when (test, reason)
 * is in the allow-list below; any other refusal, error or mismatch is
 * "not ok", and so is a model of the suite nepenc cannot load, and an
 * allow-listed skip that no longer happens (update the list).
 *
 * Each model runs in a child process so that a crash or a hang in one op
 * is reported against its test and the others still run.  The parent only
 * loads models (no oneDNN, no threads), so fork() is safe.
 *
 * NP_CONFORMANCE_FILTER=substr runs only the test folders whose name
 * contains substr (for an op owner's quick loop). */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ir.h"
#include "onnx_io.h"
#include "ops.h"
#include "rt.h"
#include "tap.h"

#define RTOL 1e-4
#define ATOL 1e-5
#define TIMEOUT_S 120
#define MAX_SETS 64

/* ------------------------------------------------------- op attribution */

static const char *const op_names[] = {
#define NP_OP(name, sym) #name,
#include "ops.def"
#undef NP_OP
};
#define N_OPS ((int)(sizeof op_names / sizeof op_names[0]))

typedef struct op_stat {
	const char *op;
	int tests, passed, failed, skipped;
} op_stat;

static op_stat stats[N_OPS + 64];
static int n_stats;

static op_stat *stat_for(const char *op)
{
	for (int i = 0; i < n_stats; i++)
		if (strcmp(stats[i].op, op) == 0)
			return &stats[i];
	if (n_stats == (int)(sizeof stats / sizeof stats[0]))
		return &stats[n_stats - 1];
	stats[n_stats].op = strdup(op);
	return &stats[n_stats++];
}

/* "test_batchnorm_epsilon" starts with the lower-cased op name (or the
 * ONNX suite's abbreviation) followed by '_' or the end. */
static bool name_has_prefix(const char *dir, const char *op)
{
	static const struct { const char *op, *alias; } aliases[] = {
		{"BatchNormalization", "batchnorm"},
	};
	char low[64];
	size_t n = strlen(op);
	for (size_t i = 0; i < sizeof aliases / sizeof aliases[0]; i++)
		if (strcmp(op, aliases[i].op) == 0) {
			op = aliases[i].alias;
			n = strlen(op);
		}
	if (n >= sizeof low)
		return false;
	for (size_t i = 0; i <= n; i++)
		low[i] = (char)(op[i] >= 'A' && op[i] <= 'Z' ? op[i] - 'A' + 'a' : op[i]);
	const char *s = dir + 5;  /* after "test_" */
	return strncmp(s, low, n) == 0 && (s[n] == '\0' || s[n] == '_');
}

/* The op a test belongs to: its single node's, else (an _expanded test
 * of several nodes) the op its name starts with. */
static const char *test_op(const char *dir, const np_model *m)
{
	const np_graph *g = m->graph;
	if (g->n_nodes == 1)
		return g->nodes[0]->op_type;
	const char *best = NULL;
	for (int i = 0; i < N_OPS; i++)
		if (name_has_prefix(dir, op_names[i]) &&
		    (!best || strlen(op_names[i]) > strlen(best)))
			best = op_names[i];
	return best ? best : g->nodes[0]->op_type;
}

static bool all_ops_known(const np_model *m)
{
	const np_graph *g = m->graph;
	if (g->n_nodes == 0)
		return false;
	for (int i = 0; i < g->n_nodes; i++)
		if (!np_op_find(g->nodes[i]->domain, g->nodes[i]->op_type))
			return false;
	return true;
}

/* ---------------------------------------------------------- allow-list */

/* The skips nepenc owns up to: the test folder and a piece of the reason
 * the runtime (or the harness) gives.  Anything else that is refused
 * fails. */
typedef struct allowed_skip {
	const char *test, *reason;
	bool seen;                   /* the test ran and skipped for it */
} allowed_skip;

#define UINT8_ARITH "input types uint8 and uint8 are not supported"
#define NOT_TENSOR "is not a tensor (sequence and optional types"
#define TRAINING_DROPOUT "Dropout with training_mode=true"
static allowed_skip allowed[] = {
	/* Element-wise arithmetic is float (and int64 shapes) only. */
	{"test_add_uint8", UINT8_ARITH, false},
	{"test_sub_uint8", UINT8_ARITH, false},
	{"test_mul_uint8", UINT8_ARITH, false},
	{"test_div_uint8", UINT8_ARITH, false},
	{"test_pow_types_float", "input types int64 and float are not supported", false},
	{"test_pow_types_float32_uint32", "input types float and uint32 are not supported", false},
	{"test_pow_types_float32_uint64", "input types float and uint64 are not supported", false},
	{"test_pow_types_int32_float32", "input types int32 and float are not supported", false},
	{"test_pow_types_int32_int32", "input types int32 and int32 are not supported", false},
	{"test_pow_types_int64_float32", "input types int64 and float are not supported", false},
	{"test_pow_types_int64_int64", "input types int64 and int64 are not supported", false},
	{"test_clip_default_int8_inbounds", "input type int8 is not supported", false},
	{"test_clip_default_int8_max", "input type int8 is not supported", false},
	{"test_clip_default_int8_min", "input type int8 is not supported", false},
	/* Cast: no 16-bit floats, no strings. */
	{"test_cast_BFLOAT16_to_FLOAT", "Cast from bfloat16 to float is not supported", false},
	{"test_cast_DOUBLE_to_FLOAT16", "Cast from double to float16 is not supported", false},
	{"test_cast_FLOAT16_to_DOUBLE", "Cast from float16 to double is not supported", false},
	{"test_cast_FLOAT16_to_FLOAT", "Cast from float16 to float is not supported", false},
	{"test_cast_FLOAT_to_BFLOAT16", "Cast from float to bfloat16 is not supported", false},
	{"test_cast_FLOAT_to_FLOAT16", "Cast from float to float16 is not supported", false},
	{"test_cast_FLOAT_to_STRING", "Cast from float to string is not supported", false},
	{"test_cast_STRING_to_FLOAT", "of type string is not supported", false},
	{"test_castlike_DOUBLE_to_FLOAT16_expanded", "Cast from double to float16 is not supported", false},
	{"test_castlike_FLOAT16_to_DOUBLE_expanded", "Cast from float16 to double is not supported", false},
	{"test_castlike_FLOAT16_to_FLOAT_expanded", "Cast from float16 to float is not supported", false},
	{"test_castlike_FLOAT_to_FLOAT16_expanded", "Cast from float to float16 is not supported", false},
	{"test_castlike_FLOAT_to_STRING_expanded", "of type string is not supported", false},
	{"test_castlike_STRING_to_FLOAT_expanded", "of type string is not supported", false},
	/* The suite's data contradict its model (onnxruntime refuses them too). */
	{"test_castlike_BFLOAT16_to_FLOAT_expanded", "inconsistent test data", false},
	{"test_castlike_FLOAT_to_BFLOAT16_expanded", "inconsistent test data", false},
	/* Sequence and optional values. */
	{"test_identity_opt", NOT_TENSOR, false},
	{"test_identity_sequence", NOT_TENSOR, false},
	/* MaxPool's second output. */
	{"test_maxpool_with_argmax_2d_precomputed_pads", "the Indices output of MaxPool", false},
	{"test_maxpool_with_argmax_2d_precomputed_strides", "the Indices output of MaxPool", false},
	/* Range's float bounds arrive as float graph inputs, which are not
	 * plan-time constants (only non-float inputs are part of a plan's
	 * signature), yet the output's length depends on them. */
	{"test_range_float_type_positive_delta", "must be known at plan time", false},
	/* Dropout runs as the identity (inference). */
	{"test_training_dropout", TRAINING_DROPOUT, false},
	{"test_training_dropout_default", TRAINING_DROPOUT, false},
	{"test_training_dropout_default_mask", TRAINING_DROPOUT, false},
	{"test_training_dropout_mask", TRAINING_DROPOUT, false},
};
#define N_ALLOWED ((int)(sizeof allowed / sizeof allowed[0]))

/* The allow-list entry of test with a reason msg contains, or NULL. */
static allowed_skip *allowed_for(const char *test, const char *msg)
{
	for (int i = 0; i < N_ALLOWED; i++)
		if (strcmp(allowed[i].test, test) == 0 && strstr(msg, allowed[i].reason))
			return &allowed[i];
	return NULL;
}

/* -------------------------------------------------------- child: run */

/* One line back to the parent: 'P', 'F' or 'S', a space, the message. */
static void report(FILE *out, char code, const char *msg)
{
	fputc(code, out);
	fputc(' ', out);
	for (const char *p = msg; *p; p++)
		fputc(*p == '\n' || *p == '\r' ? ' ' : *p, out);
	fputc('\n', out);
	fflush(out);
}

static bool close_enough(double a, double b)
{
	if (isnan(a) || isnan(b))
		return isnan(a) && isnan(b);
	if (isinf(a) || isinf(b))
		return a == b;
	return fabs(a - b) <= ATOL + RTOL * fabs(b);
}

static double real_at(const void *p, int dtype, int64_t i)
{
	return dtype == NP_FLOAT ? ((const float *)p)[i] : ((const double *)p)[i];
}

static void dims_str(char *buf, size_t n, int rank, const int64_t *dims)
{
	size_t k = (size_t)snprintf(buf, n, "[");
	for (int i = 0; i < rank && k < n; i++)
		k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? "," : "",
		                      (long long)dims[i]);
	if (k < n)
		snprintf(buf + k, n - k, "]");
}

/* NULL when got matches want, else a message in buf. */
static const char *compare(const np_rtensor *got, const np_tensor *want,
                           char *buf, size_t n)
{
	char gd[128], wd[128];
	if (got->dtype != want->dtype) {
		snprintf(buf, n, "output '%s' is %s, expected %s", got->name,
		         np_dtype_name(got->dtype), np_dtype_name(want->dtype));
		return buf;
	}
	bool same = got->rank == want->rank;
	for (int i = 0; same && i < got->rank; i++)
		same = got->dims[i] == want->dims[i];
	if (!same) {
		dims_str(gd, sizeof gd, got->rank, got->dims);
		dims_str(wd, sizeof wd, want->rank, want->dims);
		snprintf(buf, n, "output '%s' has shape %s, expected %s", got->name, gd, wd);
		return buf;
	}
	size_t es = np_dtype_size(want->dtype);
	if (es == 0) {
		snprintf(buf, n, "output '%s' of type %s cannot be compared", got->name,
		         np_dtype_name(want->dtype));
		return buf;
	}
	int64_t bad = 0, first = -1;
	double worst = 0;
	for (int64_t i = 0; i < want->nelem; i++) {
		bool eq;
		if (want->dtype == NP_FLOAT || want->dtype == NP_DOUBLE) {
			double a = real_at(got->data, got->dtype, i);
			double b = real_at(want->data, want->dtype, i);
			eq = close_enough(a, b);
			if (!eq && !isnan(a - b) && fabs(a - b) > worst)
				worst = fabs(a - b);
		} else if (want->dtype == NP_BOOL) {
			eq = (((const uint8_t *)got->data)[i] != 0) ==
			     (((const uint8_t *)want->data)[i] != 0);
		} else {
			eq = memcmp((const char *)got->data + (size_t)i * es,
			            (const char *)want->data + (size_t)i * es, es) == 0;
		}
		if (!eq && bad++ == 0)
			first = i;
	}
	if (!bad)
		return NULL;
	if (want->dtype == NP_FLOAT || want->dtype == NP_DOUBLE)
		snprintf(buf, n, "output '%s': %lld of %lld values differ; [%lld] = %.9g, "
		         "expected %.9g; max |diff| %.3g", got->name, (long long)bad,
		         (long long)want->nelem, (long long)first,
		         real_at(got->data, got->dtype, first),
		         real_at(want->data, want->dtype, first), worst);
	else if (want->dtype == NP_INT64)
		snprintf(buf, n, "output '%s': %lld of %lld values differ; [%lld] = %lld, "
		         "expected %lld", got->name, (long long)bad, (long long)want->nelem,
		         (long long)first, (long long)((const int64_t *)got->data)[first],
		         (long long)((const int64_t *)want->data)[first]);
	else
		snprintf(buf, n, "output '%s': %lld of %lld values differ, first at [%lld]",
		         got->name, (long long)bad, (long long)want->nelem, (long long)first);
	return buf;
}

static bool file_exists(const char *path)
{
	return access(path, R_OK) == 0;
}

/* The graph input that input_K.pb feeds: by the tensor's name when it
 * names one, else the K-th graph input that is not an initializer. */
static const np_value *bind_input(const np_graph *g, const np_tensor *t, int k)
{
	int pos = 0;
	if (t->name && *t->name)
		for (int i = 0; i < g->n_inputs; i++)
			if (strcmp(g->inputs[i]->name, t->name) == 0)
				return g->inputs[i];
	for (int i = 0; i < g->n_inputs; i++) {
		if (g->inputs[i]->init)
			continue;
		if (pos++ == k)
			return g->inputs[i];
	}
	return NULL;
}

/* The suite stores bfloat16 test data as uint16 (same bits). */
static void relabel_bfloat16(np_tensor *t, const np_value *v)
{
	if (t->dtype == NP_UINT16 && v->dtype == NP_BFLOAT16)
		t->dtype = NP_BFLOAT16;
}

/* The suite has a few data sets that contradict their own model (e.g.
 * castlike's 'like' input of [1] declared [3,4]); onnxruntime refuses
 * them too. */
static bool fits_declared(const np_tensor *t, const np_value *v)
{
	if (!v->has_shape)
		return true;
	if (v->rank != t->rank)
		return false;
	for (int i = 0; i < t->rank; i++)
		if (v->dims[i].value >= 0 && v->dims[i].value != t->dims[i])
			return false;
	return true;
}

/* Sequence and optional values cannot be bound: their test data are not
 * TensorProto files.  NULL if every graph input and output is a tensor. */
static const np_value *non_tensor_io(const np_graph *g)
{
	for (int i = 0; i < g->n_inputs; i++)
		if (g->inputs[i]->type_blob)
			return g->inputs[i];
	for (int i = 0; i < g->n_outputs; i++)
		if (g->outputs[i]->type_blob)
			return g->outputs[i];
	return NULL;
}

/* A failed call: a clear refusal is a skip, anything else a failure. */
static void report_error(FILE *out, const np_error *err, const char *when)
{
	char msg[1200];
	snprintf(msg, sizeof msg, "%s: %s", when, err->msg[0] ? err->msg : "(no message)");
	report(out, err->status == NP_ERR_UNSUPPORTED ? 'S' : 'F', msg);
}

static void run_set(FILE *out, np_rt *rt, np_model *m, const char *set)
{
	np_rt_input in[32];
	int n_in = 0;
	char path[4096], msg[2048];
	np_error err = {0};
	for (int k = 0; k < 32; k++) {
		snprintf(path, sizeof path, "%s/input_%d.pb", set, k);
		if (!file_exists(path))
			break;
		np_tensor *t = np_onnx_read_tensor(m, path, &err);
		if (!t) {
			report_error(out, &err, "reading input");
			return;
		}
		const np_value *v = bind_input(m->graph, t, k);
		if (!v || t->rank > NP_RT_MAX_RANK) {
			snprintf(msg, sizeof msg, "input_%d.pb %s", k,
			         v ? "has too high a rank" : "matches no graph input");
			report(out, v ? 'S' : 'F', msg);
			return;
		}
		relabel_bfloat16(t, v);
		if (!fits_declared(t, v)) {
			snprintf(msg, sizeof msg, "inconsistent test data: input_%d.pb does "
			         "not have the shape the model declares for '%s'", k, v->name);
			report(out, 'S', msg);
			return;
		}
		in[n_in] = (np_rt_input){.name = v->name, .dtype = t->dtype,
		                         .rank = t->rank, .data = t->data};
		memcpy(in[n_in].dims, t->dims, sizeof(int64_t) * (size_t)t->rank);
		n_in++;
	}
	if (np_rt_run(rt, in, n_in, NP_RT_INFER, &err) != NP_OK) {
		report_error(out, &err, "run");
		return;
	}
	int n_out = m->graph->n_outputs;
	if (np_rt_n_outputs(rt) != n_out) {
		snprintf(msg, sizeof msg, "runtime has %d outputs, graph %d",
		         np_rt_n_outputs(rt), n_out);
		report(out, 'F', msg);
		return;
	}
	for (int k = 0; k < n_out; k++) {
		snprintf(path, sizeof path, "%s/output_%d.pb", set, k);
		if (!file_exists(path))
			continue;
		np_tensor *want = np_onnx_read_tensor(m, path, &err);
		if (!want) {
			report_error(out, &err, "reading expected output");
			return;
		}
		relabel_bfloat16(want, m->graph->outputs[k]);
		if (compare(np_rt_output(rt, k), want, msg, sizeof msg)) {
			report(out, 'F', msg);
			return;
		}
	}
	report(out, 'P', "");
}

/* The child: one rt for the model, every data set in turn. */
static void child(FILE *out, np_model *m, char **sets, int n_sets)
{
	np_error err = {0};
	const np_value *odd = non_tensor_io(m->graph);
	if (odd) {
		char msg[512];
		snprintf(msg, sizeof msg, "graph value '%s' is not a tensor "
		         "(sequence and optional types are not supported)", odd->name);
		for (int i = 0; i < n_sets; i++)
			report(out, 'S', msg);
		return;
	}
	alarm(TIMEOUT_S);
	np_rt *rt = np_rt_new(m, 2, &err);
	if (!rt) {
		for (int i = 0; i < n_sets; i++)
			report_error(out, &err, "model");
		return;
	}
	for (int i = 0; i < n_sets; i++)
		run_set(out, rt, m, sets[i]);
	np_rt_free(rt);
}

/* ------------------------------------------------------- parent: TAP */

static int n_pass, n_fail, n_skip;

static void tap_line(const char *name, char code, const char *msg)
{
	if (code == 'P')
		ok(1, "%s", name);
	else if (code == 'S')
		skip(name, msg);
	else
		ok(0, "%s: %s", name, msg);
}

static void describe_exit(int status, char *buf, size_t n)
{
	if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM)
		snprintf(buf, n, "timed out after %d s", TIMEOUT_S);
	else if (WIFSIGNALED(status))
		snprintf(buf, n, "crashed: %s", strsignal(WTERMSIG(status)));
	else if (WIFEXITED(status))
		snprintf(buf, n, "child exited with status %d before reporting",
		         WEXITSTATUS(status));
	else
		snprintf(buf, n, "child stopped");
}

static int set_filter(const struct dirent *d)
{
	return strncmp(d->d_name, "test_data_set_", 14) == 0;
}

static int test_filter(const struct dirent *d)
{
	const char *f = getenv("NP_CONFORMANCE_FILTER");
	return strncmp(d->d_name, "test_", 5) == 0 && (!f || strstr(d->d_name, f));
}

/* Numeric order of test_data_set_N (alphasort puts 10 before 2). */
static int set_cmp(const struct dirent **a, const struct dirent **b)
{
	return atoi((*a)->d_name + 14) - atoi((*b)->d_name + 14);
}

/* Run one model's data sets in a child, print a TAP line per set; the
 * test's verdict: failed if any set failed, else skipped if any set was. */
static char run_test(const char *dir, const char *name, np_model *m)
{
	struct dirent **ents;
	char *sets[MAX_SETS];
	int n_ents = scandir(dir, &ents, set_filter, set_cmp), n_sets = 0;
	for (int i = 0; i < n_ents; i++) {
		if (n_sets < MAX_SETS) {
			size_t len = strlen(dir) + strlen(ents[i]->d_name) + 2;
			if ((sets[n_sets] = malloc(len)))
				snprintf(sets[n_sets++], len, "%s/%s", dir, ents[i]->d_name);
		}
		free(ents[i]);
	}
	if (n_ents > 0)
		free(ents);
	if (n_sets == 0)
		return 0;
	int fd[2];
	char verdict = 'P', line[4096], label[512];
	if (pipe(fd) != 0) {
		tap_line(name, 'F', strerror(errno));
		return 'F';
	}
	fflush(stdout);
	pid_t pid = fork();
	if (pid < 0) {
		close(fd[0]);
		close(fd[1]);
		for (int i = 0; i < n_sets; i++)
			free(sets[i]);
		tap_line(name, 'F', strerror(errno));
		return 'F';
	}
	if (pid == 0) {
		close(fd[0]);
		FILE *out = fdopen(fd[1], "w");
		child(out, m, sets, n_sets);
		fclose(out);
		exit(0);  /* not _exit: lets LeakSanitizer check the run */
	}
	close(fd[1]);
	FILE *in = fdopen(fd[0], "r");
	int got = 0;
	while (got < n_sets && fgets(line, sizeof line, in)) {
		line[strcspn(line, "\n")] = '\0';
		snprintf(label, sizeof label, "%s/%s", name, strrchr(sets[got], '/') + 1);
		char code = line[0] == 'P' || line[0] == 'S' ? line[0] : 'F';
		const char *msg = line[1] ? line + 2 : "";
		char why[4200];
		if (code == 'S') {
			allowed_skip *a = allowed_for(name, msg);
			if (a) {
				a->seen = true;
			} else {
				snprintf(why, sizeof why, "refused, and (test, reason) is not in "
				         "the allow-list: %s", msg);
				code = 'F';
				msg = why;
			}
		}
		tap_line(label, code, msg);
		if (code == 'F' || (code == 'S' && verdict == 'P'))
			verdict = code;
		got++;
	}
	fclose(in);
	int status = 0;
	if (waitpid(pid, &status, 0) < 0)
		status = 0;
	if (got == n_sets && status != 0) {
		/* every check reported, then the child failed: a sanitizer's
		 * leak report or an error at exit */
		describe_exit(status, line, sizeof line);
		tap_line(name, 'F', WIFEXITED(status) ? "child exited non-zero after its "
		         "checks (sanitizer report on stderr?)" : line);
		verdict = 'F';
	}
	for (; got < n_sets; got++) {
		describe_exit(status, line, sizeof line);
		snprintf(label, sizeof label, "%s/%s", name, strrchr(sets[got], '/') + 1);
		tap_line(label, 'F', line);
		verdict = 'F';
	}
	for (int i = 0; i < n_sets; i++)
		free(sets[i]);
	return verdict;
}

static void count(const char *op, char verdict)
{
	op_stat *s = stat_for(op);
	s->tests++;
	if (verdict == 'P') {
		s->passed++;
		n_pass++;
	} else if (verdict == 'S') {
		s->skipped++;
		n_skip++;
	} else {
		s->failed++;
		n_fail++;
	}
}

int main(void)
{
	const char *root = getenv("ONNX_TESTDATA");
	char node[4096], dir[8192], path[8400];
	snprintf(node, sizeof node, "%s/node",
	         root && *root ? root : "/usr/share/libonnx-testdata/data");
	struct dirent **ents;
	int n = scandir(node, &ents, test_filter, alphasort);
	if (n <= 0) {
		char why[4200];
		snprintf(why, sizeof why, "no ONNX node tests in %s", node);
		return skip_all(why);
	}
	for (int i = 0; i < n; i++) {
		const char *name = ents[i]->d_name;
		np_error err = {0};
		snprintf(dir, sizeof dir, "%s/%s", node, name);
		snprintf(path, sizeof path, "%s/model.onnx", dir);
		np_model *m = np_onnx_load(path, &err);
		if (!m) {
			/* Every model of the suite is valid ONNX: the loader must
			 * read it, whatever its ops. */
			char msg[1200];
			snprintf(msg, sizeof msg, "cannot load: %s", err.msg);
			tap_line(name, 'F', msg);
			count("(not loadable)", 'F');
		} else if (all_ops_known(m)) {
			char v = run_test(dir, name, m);
			if (v)
				count(test_op(name, m), v);
			for (int k = 0; v && k < N_ALLOWED; k++)
				if (strcmp(allowed[k].test, name) == 0 && !allowed[k].seen)
					tap_line(name, 'F', "allow-listed skip did not happen "
					         "(remove it from the allow-list)");
		}
		np_model_free(m);
		free(ents[i]);
	}
	free(ents);
	for (int i = 0; i < n_stats; i++)
		printf("# %-20s %3d tests: %d passed, %d failed, %d skipped\n",
		       stats[i].op, stats[i].tests, stats[i].passed, stats[i].failed,
		       stats[i].skipped);
	for (int i = 0; i < N_OPS; i++) {
		bool seen = false;
		for (int k = 0; k < n_stats && !seen; k++)
			seen = strcmp(stats[k].op, op_names[i]) == 0;
		if (!seen)
			printf("# %-20s no node tests in this suite\n", op_names[i]);
	}
	int n_ops = 0;
	for (int i = 0; i < n_stats; i++)
		n_ops += stats[i].op[0] != '(';
	printf("# ran %d node tests of %d ops: %d passed, %d failed, %d skipped\n",
	       n_pass + n_fail + n_skip, n_ops, n_pass, n_fail, n_skip);
	return done_testing();
}
