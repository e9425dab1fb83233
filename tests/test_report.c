/* test_report.c - the run report (XML) and plot (SVG) of a hand-built run.
 *
 * The run has three layers (Relu, Clip with three states, Relu), three
 * iterations (accepted, accepted and chosen, failed and rolled back) and a
 * pass log with every entry kind.  The report must validate against
 * data/nepenc-report.rng, say what the run says (XPath), come out the same
 * twice, and fail cleanly on a bad path; the plot must be well-formed XML
 * with an <svg> root, also deterministic.
 *
 *   test_report               TAP
 *   test_report --svg FILE    write the plot of the run to FILE (for
 *                             tests/plot.test, which renders it)
 */
#include <dirent.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libxml/parser.h>
#include <libxml/relaxng.h>
#include <libxml/tree.h>
#include <libxml/xpath.h>
#include <libxml/xpathInternals.h>

#include "nepenthe.h"
#include "plot.h"
#include "report.h"
#include "tap.h"

enum { N_LAYERS = 3, N_IT = 3 };

static const char *names[N_LAYERS] = {
	"/features/features.0/Relu",
	"/features/block2/clip6 <&\"odd\">",
	"/classifier/classifier.1/Relu"
};
static const char *kinds[N_LAYERS] = {"relu", "clip", "relu"};
static const int64_t neurons[N_LAYERS] = {16, 8, 4};

/* Mixed neurons of layer l at iteration t (t = N_IT: the re-profiled
 * chosen iterate): entropy falls as masking goes on; layer 1 reaches 0. */
static const int mixed_at[N_IT + 1][N_LAYERS] = {
	{12, 8, 4}, {6, 6, 4}, {3, 5, 3}, {0, 4, 3}
};

/* ------------------------------------------------------------ the run */

static double entropy(const int64_t *c, int ns)
{
	int64_t sum = 0;
	for (int k = 0; k < ns; k++)
		sum += c[k];
	double h = 0;
	for (int k = 0; k < ns && sum > 0; k++) {
		if (c[k] > 0) {
			double p = (double)c[k] / (double)sum;
			h -= p * log2(p);
		}
	}
	return h;
}

/* Neurons below `mixed` see several states; the rest one state each, in
 * turn OFF, ON, (OFF+), and the last one none at all (don't care). */
static void fill_layer(np_layer_profile *lp, int l, int mixed)
{
	int ns = kinds[l][0] == 'c' ? 3 : 2;
	int64_t n = neurons[l];
	lp->neurons = n;
	lp->n_states = ns;
	lp->counts = calloc((size_t)(n * ns), sizeof *lp->counts);
	lp->dont_care = calloc((size_t)n, sizeof *lp->dont_care);
	lp->H = calloc((size_t)n, sizeof *lp->H);
	double sum = 0;
	for (int64_t i = 0; i < n; i++) {
		int64_t *c = lp->counts + i * ns;
		if (i < mixed) {
			for (int k = 0; k < ns; k++)
				c[k] = 10 + (i * 7 + k * 13) % 40;
		} else if (i < n - 1) {
			c[(i - mixed) % ns] = 50;
		}
		lp->dont_care[i] = i % 3;
		lp->H[i] = entropy(c, ns);
		lp->zero_neurons += lp->H[i] == 0;
		sum += lp->H[i];
	}
	lp->H_layer = sum / (double)n;
}

static void fill_profile(np_profile *p, int t)
{
	p->n = N_LAYERS;
	p->l = calloc(N_LAYERS, sizeof *p->l);
	for (int l = 0; l < N_LAYERS; l++)
		fill_layer(&p->l[l], l, mixed_at[t][l]);
}

static void free_profile(np_profile *p)
{
	for (int l = 0; l < p->n; l++) {
		free(p->l[l].counts);
		free(p->l[l].dont_care);
		free(p->l[l].H);
	}
	free(p->l);
	p->l = NULL;
	p->n = 0;
}

static void log_add(np_pass_log *log, np_log_kind kind, const char *pass,
                    const char *node, const char *into, const char *why)
{
	if (log->n == log->cap) {
		log->cap = log->cap ? 2 * log->cap : 8;
		log->v = realloc(log->v, sizeof *log->v * (size_t)log->cap);
	}
	log->v[log->n++] = (np_log_entry){kind, pass, node, into, why};
}

static void build_run(np_run *r)
{
	*r = (np_run){
		.zeta = 0.5, .theta = 0.99, .entropy_eps = 0, .max_iter = 3,
		.epochs = 2, .backoff = 2, .method = NP_METHOD_NEPENTHE,
		.criterion = NP_CRIT_MAGNITUDE, .fold = NP_FOLD_EXACT,
		.dense_val = 91.24, .final_val = 90.87, .dense_test = 90.5,
		.final_test = 90.11, .chosen = 2, .layers = N_LAYERS,
		.removed = 1, .nodes_before = 14, .nodes_after = 9,
		.depth_before = 10, .depth_after = 7, .sparsity = 0.4375,
		.seconds = 12.3456, .layer_names = names, .layer_kinds = kinds
	};
	r->n_it = N_IT;
	r->it = calloc(N_IT, sizeof *r->it);
	static const double zeta[N_IT] = {0.5, 0.5, 0.5};
	static const double val[N_IT] = {91.20, 90.87, 70.12};
	for (int t = 0; t < N_IT; t++) {
		np_iteration *it = &r->it[t];
		it->index = t + 1;
		it->zeta = zeta[t];
		it->val_top1 = val[t];
		it->accepted = t < 2;
		it->backoff = t == 2;
		it->sparsity = 0.25 * (t + 1);
		it->seconds = 3.5 + t;
		fill_profile(&it->profile, t);
		it->mask = calloc(N_LAYERS, sizeof *it->mask);
		for (int l = 0; l < N_LAYERS; l++)
			it->mask[l] = (np_mask_layer_stat){
				.I = 0.1 * (l + 1), .R = 3.0 / (l + 1),
				.budget = 100 - 10 * l, .removed = 90 - 10 * l,
				.nonzero_before = 1000 - 100 * t};
	}
	fill_profile(&r->final_profile, N_IT);
	/* Layer 1 linearized and folded; layer 2 linearized then undone. */
	log_add(&r->log, NP_LOG_FOLDED, "fold_bn", "/features/bn0",
	        "/features/conv0", "exact: per-channel scale and shift");
	log_add(&r->log, NP_LOG_LINEARIZED, "linearize", names[0],
	        "/features/conv0", "all 16 neurons in one state");
	log_add(&r->log, NP_LOG_LINEARIZED, "linearize", names[1], NULL, NULL);
	log_add(&r->log, NP_LOG_REMOVED, "dce", "/features/Identity_3", NULL,
	        "no consumer");
	log_add(&r->log, NP_LOG_REFUSED, "fold_conv", "/features/conv1",
	        "/features/conv2", "padded consumer: not exact");
	log_add(&r->log, NP_LOG_UNDONE, "linearize", names[1], NULL,
	        "validation accuracy 0.81 < theta * dense");
}

static void free_run(np_run *r)
{
	for (int t = 0; t < r->n_it; t++) {
		free_profile(&r->it[t].profile);
		free(r->it[t].mask);
	}
	free(r->it);
	free_profile(&r->final_profile);
	free(r->log.v);
}

/* ------------------------------------------------------------- helpers */

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	char *buf = NULL;
	size_t cap = 0, n = 0, got;
	do {
		if (n == cap) {
			cap = cap ? 2 * cap : 65536;
			buf = realloc(buf, cap);
		}
		got = fread(buf + n, 1, cap - n, f);
		n += got;
	} while (got > 0);
	fclose(f);
	*len = n;
	return buf;
}

static int same_file(const char *a, const char *b)
{
	size_t na = 0, nb = 0;
	char *x = slurp(a, &na), *y = slurp(b, &nb);
	int eq = x && y && na == nb && memcmp(x, y, na) == 0;
	free(x);
	free(y);
	return eq;
}

static int entries_in(const char *dir)
{
	DIR *d = opendir(dir);
	int n = 0;
	for (struct dirent *e; d && (e = readdir(d));)
		n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
	if (d)
		closedir(d);
	return n;
}

static char *schema_path(void)
{
	const char *top = getenv("top_srcdir");
	static char buf[4096];
	if (top && *top) {
		snprintf(buf, sizeof buf, "%s/data/nepenc-report.rng", top);
	} else {
		/* __FILE__ is this file's path as the compiler saw it. */
		const char *slash = strrchr(__FILE__, '/');
		snprintf(buf, sizeof buf, "%.*s/../data/nepenc-report.rng",
		         slash ? (int)(slash - __FILE__) : 1,
		         slash ? __FILE__ : ".");
	}
	return buf;
}

static xmlRelaxNGPtr load_schema(void)
{
	xmlRelaxNGParserCtxtPtr pc = xmlRelaxNGNewParserCtxt(schema_path());
	xmlRelaxNGPtr s = pc ? xmlRelaxNGParse(pc) : NULL;
	xmlRelaxNGFreeParserCtxt(pc);
	return s;
}

static void quiet(void *ctx, xmlErrorPtr e)
{
	(void)ctx;
	(void)e;
}

/* quiet: the document is expected to fail; keep the log clean. */
static int validates_q(xmlRelaxNGPtr schema, xmlDocPtr doc, bool hush)
{
	if (!schema || !doc)
		return 0;
	xmlRelaxNGValidCtxtPtr vc = xmlRelaxNGNewValidCtxt(schema);
	if (hush)
		xmlRelaxNGSetValidStructuredErrors(vc, quiet, NULL);
	int rc = xmlRelaxNGValidateDoc(vc, doc);
	xmlRelaxNGFreeValidCtxt(vc);
	return rc == 0;
}

static int validates(xmlRelaxNGPtr schema, xmlDocPtr doc)
{
	return validates_q(schema, doc, false);
}

static xmlDocPtr parse(const char *path)
{
	return xmlReadFile(path, NULL, XML_PARSE_NONET);
}

/* The string value of an XPath expression ("" when it fails). */
static char xp_buf[1024];
static const char *xp(xmlDocPtr doc, const char *expr)
{
	xp_buf[0] = '\0';
	xmlXPathContextPtr c = doc ? xmlXPathNewContext(doc) : NULL;
	xmlXPathObjectPtr o = c ? xmlXPathEvalExpression(BAD_CAST expr, c) : NULL;
	xmlChar *s = o ? xmlXPathCastToString(o) : NULL;
	if (s)
		snprintf(xp_buf, sizeof xp_buf, "%s", (const char *)s);
	xmlFree(s);
	xmlXPathFreeObject(o);
	xmlXPathFreeContext(c);
	return xp_buf;
}

static int xp_is(xmlDocPtr doc, const char *expr, const char *want)
{
	const char *got = xp(doc, expr);
	if (strcmp(got, want) != 0) {
		printf("# %s = '%s', want '%s'\n", expr, got, want);
		return 0;
	}
	return 1;
}

/* ---------------------------------------------------------------- tests */

static void test_report_values(xmlDocPtr doc)
{
	ok(xp_is(doc, "string(/nepenc-report/@version)", "1"), "version 1");
	ok(xp_is(doc, "string(/nepenc-report/settings/@zeta)", "0.5") &&
	   xp_is(doc, "string(/nepenc-report/settings/@theta)", "0.99") &&
	   xp_is(doc, "string(/nepenc-report/settings/@fold)", "exact"),
	   "settings: zeta, theta, fold");
	ok(xp_is(doc, "string(//accuracy/dense[@split='validation']/@top1)",
	         "91.24") &&
	   xp_is(doc, "string(//accuracy/final[@split='test']/@top1)", "90.11"),
	   "accuracy names its split");
	ok(xp_is(doc, "count(//iterations/iteration)", "3") &&
	   xp_is(doc, "count(//iteration/layer)", "9"),
	   "3 iterations of 3 layers");
	ok(xp_is(doc, "string(//iteration[@index=2]/@chosen)", "yes") &&
	   xp_is(doc, "string(//iteration[@index=3]/@backoff)", "yes") &&
	   xp_is(doc, "string(//iteration[@index=3]/@val-top1)", "70.12"),
	   "iteration flags");
	ok(xp_is(doc, "string(//iteration[@index=1]/layer[@index=1]/@mixed)",
	         "12") &&
	   xp_is(doc, "string(//iteration[@index=1]/layer[@index=2]/@off-hi)",
	         "0") &&
	   xp_is(doc, "count(//iteration[@index=1]/layer[@index=1]/@off-hi)",
	         "0") &&
	   xp_is(doc, "string(//iteration[@index=2]/layer[@index=3]/@budget)",
	         "80"),
	   "iteration layers: states, off-hi only for Clip, budget");
	/* Final profile, layer 1: 16 neurons, none mixed: OFF/ON alternate
	 * over 15, the last has no counted state. */
	ok(xp_is(doc, "string(//layers/layer[@index=1]/@H)", "0") &&
	   xp_is(doc, "string(//layers/layer[@index=1]/@on)", "7") &&
	   xp_is(doc, "string(//layers/layer[@index=1]/@off)", "8") &&
	   xp_is(doc, "string(//layers/layer[@index=1]/@dont-care)", "1") &&
	   xp_is(doc, "string(//layers/layer[@index=1]/@zero-neurons)", "16"),
	   "chosen iterate: state summary of layer 1");
	ok(xp_is(doc, "string(//layers/layer[@index=2]/@off-hi)", "1") &&
	   xp_is(doc, "string(//layers/layer[@index=2]/@mixed)", "4"),
	   "chosen iterate: Clip layer has an OFF+ neuron");
	ok(xp_is(doc, "string(//layers/layer[@index=1]/@removed)", "yes") &&
	   xp_is(doc, "string(//layers/layer[@index=1]/@folded)", "yes") &&
	   xp_is(doc, "string(//layers/layer[@index=1]/@approximate)", "no") &&
	   xp_is(doc, "string(//layers/layer[@index=2]/@linearized)", "no") &&
	   xp_is(doc, "string(//layers/layer[@index=3]/@removed)", "no"),
	   "fates from the pass log (undone layer is not removed)");
	ok(xp_is(doc, "string(//layers/layer[@index=2]/@name)", names[1]),
	   "special characters in names round-trip");
	ok(xp_is(doc, "count(//passes/*)", "6") &&
	   xp_is(doc, "string(//passes/folded/@into)", "/features/conv0") &&
	   xp_is(doc, "count(//passes/refused)", "1") &&
	   xp_is(doc, "string(//passes/undone/@node)", names[1]),
	   "pass log: every entry kind");
	ok(xp_is(doc, "string(//summary/@layers-removed)", "1") &&
	   xp_is(doc, "string(//summary/@depth-after)", "7") &&
	   xp_is(doc, "string(//summary/@seconds)", "12.346"),
	   "summary");
}

/* The schema must reject what the writer never writes. */
static void test_schema_rejects(xmlRelaxNGPtr schema, xmlDocPtr doc)
{
	xmlDocPtr bad = xmlCopyDoc(doc, 1);
	xmlXPathContextPtr c = xmlXPathNewContext(bad);
	xmlXPathObjectPtr o = xmlXPathEvalExpression(
		BAD_CAST "//iteration[@index=1]", c);
	xmlNodePtr it = o && o->nodesetval && o->nodesetval->nodeNr
	                ? o->nodesetval->nodeTab[0] : NULL;
	if (it)
		xmlSetProp(it, BAD_CAST "accepted", BAD_CAST "maybe");
	ok(it && !validates_q(schema, bad, true), "schema rejects accepted=\"maybe\"");
	if (it)
		xmlSetProp(it, BAD_CAST "accepted", BAD_CAST "yes");
	if (it)
		xmlSetProp(it, BAD_CAST "val-top1", BAD_CAST "100.5");
	ok(it && !validates_q(schema, bad, true), "schema rejects val-top1 > 100");
	xmlXPathFreeObject(o);
	xmlXPathFreeContext(c);
	xmlFreeDoc(bad);
}

/* A bad path: one line, nothing left behind. */
static void test_bad_path(const char *dir, int which)
{
	char missing[4200], isdir[4200];
	snprintf(missing, sizeof missing, "%s/no/such/dir/out", dir);
	snprintf(isdir, sizeof isdir, "%s/sub", dir);
	mkdir(isdir, 0755);
	np_run r;
	build_run(&r);
	const char *what = which ? "plot" : "report";
	for (int k = 0; k < 2; k++) {
		const char *path = k ? isdir : missing;
		np_error err = {0};
		np_status st = which ? np_plot_write(&r, path, &err)
		                     : np_report_write(&r, path, &err);
		ok(st == NP_ERR_IO && err.msg[0] && !strchr(err.msg, '\n') &&
		   entries_in(dir) == 1,
		   "%s to %s: one-line error, nothing left (%s)", what,
		   k ? "a directory" : "a missing folder", err.msg);
	}
	rmdir(isdir);
	free_run(&r);
}

/* Names that are not UTF-8 and a run without test data, masks or a final
 * profile: still a valid document. */
static void test_sparse_run(xmlRelaxNGPtr schema, const char *dir)
{
	np_run r;
	build_run(&r);
	const char *bad_names[N_LAYERS] = {"bad\xff\xfe name", "ctl\x01x", ""};
	r.layer_names = bad_names;
	r.dense_test = r.final_test = -1;
	for (int t = 0; t < r.n_it; t++) {
		free(r.it[t].mask);
		r.it[t].mask = NULL;
	}
	free_profile(&r.final_profile);
	char path[4200];
	snprintf(path, sizeof path, "%s/sparse.xml", dir);
	np_error err = {0};
	np_status st = np_report_write(&r, path, &err);
	xmlDocPtr doc = st == NP_OK ? parse(path) : NULL;
	ok(doc && validates(schema, doc),
	   "report without test split, masks or final profile validates");
	ok(xp_is(doc, "count(//accuracy/*)", "2") &&
	   xp_is(doc, "count(//layers/layer/@H)", "0") &&
	   xp_is(doc, "string(//layers/layer[@index=1]/@name)",
	         "bad\xef\xbf\xbd\xef\xbf\xbd name"),
	   "absent parts are left out; bad bytes become U+FFFD");
	xmlFreeDoc(doc);
	unlink(path);
	snprintf(path, sizeof path, "%s/sparse.svg", dir);
	st = np_plot_write(&r, path, &err);
	doc = st == NP_OK ? parse(path) : NULL;
	ok(doc != NULL, "plot of that run is well-formed XML");
	xmlFreeDoc(doc);
	unlink(path);
	free_run(&r);
}

/* No iteration ran (the input was kept) and nothing was profiled; then a
 * record whose profile does not match its layers: an error, no file. */
static void test_empty_and_broken(xmlRelaxNGPtr schema, const char *dir)
{
	np_run r = {.zeta = 0.5, .theta = 0.99, .dense_val = 50,
	            .final_val = 50, .dense_test = -1, .final_test = -1};
	char path[4200];
	snprintf(path, sizeof path, "%s/empty.xml", dir);
	np_error err = {0};
	xmlDocPtr doc = np_report_write(&r, path, &err) == NP_OK ? parse(path)
	                                                         : NULL;
	ok(doc && validates(schema, doc), "empty run: report validates");
	xmlFreeDoc(doc);
	unlink(path);
	snprintf(path, sizeof path, "%s/empty.svg", dir);
	doc = np_plot_write(&r, path, &err) == NP_OK ? parse(path) : NULL;
	ok(doc != NULL, "empty run: plot is well-formed");
	xmlFreeDoc(doc);
	unlink(path);

	build_run(&r);
	r.layers = 2;
	snprintf(path, sizeof path, "%s/broken.xml", dir);
	np_error e2 = {0};
	ok(np_report_write(&r, path, &e2) == NP_ERR_INVALID &&
	   entries_in(dir) == 0,
	   "profile of 3 layers in a run of 2: refused, no file (%s)", e2.msg);
	r.layers = N_LAYERS;
	free_run(&r);
}

static void test_report(xmlRelaxNGPtr schema, const char *dir)
{
	np_run r;
	build_run(&r);
	char a[4200], b[4200];
	snprintf(a, sizeof a, "%s/a.xml", dir);
	snprintf(b, sizeof b, "%s/b.xml", dir);
	np_error err = {0};
	ok(np_report_write(&r, a, &err) == NP_OK, "report written (%s)", err.msg);
	ok(np_report_write(&r, b, &err) == NP_OK && same_file(a, b),
	   "written twice: identical bytes");
	size_t len = 0;
	char *text = slurp(a, &len);
	ok(text && len > 38 &&
	   strncmp(text, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n", 39) == 0 &&
	   strstr(text, "\n  <settings ") && text[len - 1] == '\n',
	   "XML declaration, UTF-8, indented, final newline");
	free(text);
	xmlDocPtr doc = parse(a);
	ok(doc != NULL, "report parses");
	ok(validates(schema, doc), "report validates against nepenc-report.rng");
	test_report_values(doc);
	test_schema_rejects(schema, doc);
	xmlFreeDoc(doc);
	unlink(a);
	unlink(b);
	free_run(&r);
}

static void test_plot(const char *dir)
{
	np_run r;
	build_run(&r);
	char a[4200], b[4200];
	snprintf(a, sizeof a, "%s/a.svg", dir);
	snprintf(b, sizeof b, "%s/b.svg", dir);
	np_error err = {0};
	ok(np_plot_write(&r, a, &err) == NP_OK, "plot written (%s)", err.msg);
	ok(np_plot_write(&r, b, &err) == NP_OK && same_file(a, b),
	   "plot written twice: identical bytes");
	xmlDocPtr doc = parse(a);
	xmlNodePtr root = doc ? xmlDocGetRootElement(doc) : NULL;
	ok(root && xmlStrcmp(root->name, BAD_CAST "svg") == 0 && root->ns &&
	   xmlStrcmp(root->ns->href, BAD_CAST "http://www.w3.org/2000/svg") == 0,
	   "plot parses as XML with an SVG root");
	/* Three iterations and the re-profiled iterate: four lines; one
	 * removed layer: one bold name. */
	xmlXPathContextPtr c = doc ? xmlXPathNewContext(doc) : NULL;
	if (c)
		xmlXPathRegisterNs(c, BAD_CAST "s", BAD_CAST "http://www.w3.org/2000/svg");
	xmlXPathObjectPtr o = c ? xmlXPathEvalExpression(
		BAD_CAST "count(//s:polyline)", c) : NULL;
	ok(o && o->floatval == 4, "four entropy lines");
	xmlXPathFreeObject(o);
	o = c ? xmlXPathEvalExpression(
		BAD_CAST "count(//s:text[@font-weight='bold' and @transform])", c)
	      : NULL;
	ok(o && o->floatval == 1, "one removed layer named in bold");
	xmlXPathFreeObject(o);
	xmlXPathFreeContext(c);
	xmlFreeDoc(doc);
	unlink(a);
	unlink(b);
	free_run(&r);
}

static int write_svg(const char *path)
{
	np_run r;
	build_run(&r);
	np_error err = {0};
	np_status st = np_plot_write(&r, path, &err);
	if (st != NP_OK)
		fprintf(stderr, "test_report: %s: %s\n", path, err.msg);
	free_run(&r);
	return st == NP_OK ? 0 : 1;
}

int main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "--svg") == 0)
		return write_svg(argv[2]);
	/* Under make check the cwd is the build tree, whose tests/ folder
	 * clean-local sweeps of *.tmp.* scratch folders. */
	char dir[] = "tests/report.tmp.XXXXXX", *d = dir;
	if (!mkdtemp(d) && !mkdtemp(d = dir + 6)) {
		printf("Bail out! cannot create a scratch folder\n");
		return 1;
	}
	xmlRelaxNGPtr schema = load_schema();
	ok(schema != NULL, "schema %s loads", schema_path());
	test_report(schema, d);
	test_sparse_run(schema, d);
	test_empty_and_broken(schema, d);
	test_bad_path(d, 0);
	test_plot(d);
	test_bad_path(d, 1);
	xmlRelaxNGFree(schema);
	xmlCleanupParser();
	int rc = done_testing();
	if (rc == 0)
		rmdir(d);
	return rc;
}
