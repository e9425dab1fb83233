/* cli.c - option parsing and help for every command; see cli.h. */
#include "config.h"

#include "cli.h"
#include "dist.h"
#include "nepenthe.h"
#include "rt.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>
#include <oneapi/dnnl/dnnl.h>
#include <protobuf-c/protobuf-c.h>

/* Which commands take an option. */
#define C_COMPILE (1u << NP_CMD_COMPILE)
#define C_INSPECT (1u << NP_CMD_INSPECT)
#define C_EVAL (1u << NP_CMD_EVAL)
#define C_FINETUNE (1u << NP_CMD_FINETUNE)
#define C_PROFILE (1u << NP_CMD_PROFILE)
#define C_DATA (C_COMPILE | C_EVAL | C_FINETUNE | C_PROFILE)
#define C_TRAIN (C_COMPILE | C_FINETUNE)
#define C_ALL (C_COMPILE | C_INSPECT | C_EVAL | C_FINETUNE | C_PROFILE)
#define C_OUT (C_COMPILE | C_FINETUNE)

enum {
	OPT_PASSES = 256, OPT_EXTERNAL_DATA, OPT_JSON, OPT_DATA, OPT_VAL, OPT_TEST,
	OPT_MEAN, OPT_STD, OPT_SCALE, OPT_LIMIT, OPT_BATCH, OPT_THREADS, OPT_SEED,
	OPT_EPOCHS, OPT_LR, OPT_MOMENTUM, OPT_WEIGHT_DECAY, OPT_NESTEROV,
	OPT_LR_SCHEDULE, OPT_PRECISION, OPT_AUGMENT, OPT_TEMPERATURE, OPT_NO_DONT_CARE,
	OPT_ZETA, OPT_THETA, OPT_MAX_ITER, OPT_BACKOFF, OPT_ENTROPY_EPS, OPT_METHOD,
	OPT_CRITERION, OPT_FOLD, OPT_NO_ENTROPY_BUDGET, OPT_NO_NEURON_SELECTION,
	OPT_REPORT, OPT_PLOT, OPT_CONFIG, OPT_DEPFILE,
	OPT_RESIZE, OPT_CROP, OPT_CLASSES, OPT_SKIP_BAD_IMAGES, OPT_WORKERS,
	OPT_EASIER_MAP, OPT_MIN_LIVE, OPT_OPTIMIZER, OPT_BETA1, OPT_BETA2,
	OPT_ADAM_EPS, OPT_WARMUP, OPT_BUCKET_MIB,
	OPT_END
};

typedef struct np_opt {
	struct option lo;
	unsigned commands;
} np_opt;

static const np_opt np_opts[] = {
	{{"output", required_argument, NULL, 'o'}, C_COMPILE | C_FINETUNE},
	{{"passes", required_argument, NULL, OPT_PASSES}, C_COMPILE},
	{{"external-data", no_argument, NULL, OPT_EXTERNAL_DATA}, C_COMPILE | C_FINETUNE},
	{{"json", no_argument, NULL, OPT_JSON}, C_ALL},
	{{"zeta", required_argument, NULL, OPT_ZETA}, C_COMPILE},
	{{"theta", required_argument, NULL, OPT_THETA}, C_COMPILE},
	{{"max-iter", required_argument, NULL, OPT_MAX_ITER}, C_COMPILE},
	{{"backoff", required_argument, NULL, OPT_BACKOFF}, C_COMPILE},
	{{"entropy-eps", required_argument, NULL, OPT_ENTROPY_EPS}, C_COMPILE},
	{{"method", required_argument, NULL, OPT_METHOD}, C_COMPILE},
	{{"criterion", required_argument, NULL, OPT_CRITERION}, C_COMPILE},
	{{"fold", required_argument, NULL, OPT_FOLD}, C_COMPILE},
	{{"no-entropy-budget", no_argument, NULL, OPT_NO_ENTROPY_BUDGET}, C_COMPILE},
	{{"no-neuron-selection", no_argument, NULL, OPT_NO_NEURON_SELECTION}, C_COMPILE},
	{{"min-live", required_argument, NULL, OPT_MIN_LIVE}, C_COMPILE},
	{{"easier-map", required_argument, NULL, OPT_EASIER_MAP}, C_COMPILE},
	{{"report", required_argument, NULL, OPT_REPORT}, C_COMPILE},
	{{"plot", required_argument, NULL, OPT_PLOT}, C_COMPILE},
	{{"no-dont-care", no_argument, NULL, OPT_NO_DONT_CARE}, C_COMPILE | C_PROFILE},
	{{"data", required_argument, NULL, OPT_DATA}, C_DATA},
	{{"val", required_argument, NULL, OPT_VAL}, C_TRAIN},
	{{"test", required_argument, NULL, OPT_TEST}, C_TRAIN},
	{{"mean", required_argument, NULL, OPT_MEAN}, C_DATA},
	{{"std", required_argument, NULL, OPT_STD}, C_DATA},
	{{"scale", required_argument, NULL, OPT_SCALE}, C_DATA},
	{{"limit", required_argument, NULL, OPT_LIMIT}, C_DATA},
	{{"batch", required_argument, NULL, OPT_BATCH}, C_DATA},
	{{"threads", required_argument, NULL, OPT_THREADS}, C_DATA},
	{{"resize", required_argument, NULL, OPT_RESIZE}, C_DATA},
	{{"crop", required_argument, NULL, OPT_CROP}, C_DATA},
	{{"classes", required_argument, NULL, OPT_CLASSES}, C_DATA},
	{{"skip-bad-images", no_argument, NULL, OPT_SKIP_BAD_IMAGES}, C_DATA},
	{{"workers", required_argument, NULL, OPT_WORKERS}, C_DATA},
	{{"seed", required_argument, NULL, OPT_SEED}, C_TRAIN},
	{{"epochs", required_argument, NULL, OPT_EPOCHS}, C_TRAIN},
	{{"lr", required_argument, NULL, OPT_LR}, C_TRAIN},
	{{"momentum", required_argument, NULL, OPT_MOMENTUM}, C_TRAIN},
	{{"weight-decay", required_argument, NULL, OPT_WEIGHT_DECAY}, C_TRAIN},
	{{"nesterov", no_argument, NULL, OPT_NESTEROV}, C_TRAIN},
	{{"lr-schedule", required_argument, NULL, OPT_LR_SCHEDULE}, C_TRAIN},
	{{"warmup", required_argument, NULL, OPT_WARMUP}, C_TRAIN},
	{{"bucket-mib", required_argument, NULL, OPT_BUCKET_MIB}, C_TRAIN},
	{{"optimizer", required_argument, NULL, OPT_OPTIMIZER}, C_TRAIN},
	{{"beta1", required_argument, NULL, OPT_BETA1}, C_TRAIN},
	{{"beta2", required_argument, NULL, OPT_BETA2}, C_TRAIN},
	{{"adam-eps", required_argument, NULL, OPT_ADAM_EPS}, C_TRAIN},
	{{"precision", required_argument, NULL, OPT_PRECISION}, C_TRAIN},
	{{"augment", required_argument, NULL, OPT_AUGMENT}, C_TRAIN},
	{{"temperature", required_argument, NULL, OPT_TEMPERATURE}, C_TRAIN},
	{{"config", required_argument, NULL, OPT_CONFIG}, C_DATA},
	{{"depfile", required_argument, NULL, OPT_DEPFILE}, C_OUT},
	{{"quiet", no_argument, NULL, 'q'}, C_ALL},
	{{"verbose", no_argument, NULL, 'v'}, C_ALL},
	{{"help", no_argument, NULL, 'h'}, C_ALL},
	{{"version", no_argument, NULL, 'V'}, C_ALL},
};
#define NP_N_OPTS (sizeof np_opts / sizeof np_opts[0])

static const char *const np_command_names[] = {"compile", "inspect", "eval",
                                               "finetune", "profile"};

__attribute__((format(printf, 1, 2)))
static int np_usage(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("nepenc: ", stderr);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\nTry 'nepenc --help' for more information.\n", stderr);
	return 2;
}

void np_cli_help(FILE *out)
{
	fputs(
"Usage: nepenc MODEL.onnx -o OUT.onnx [OPTION]...\n"
"       nepenc inspect [--json] MODEL.onnx\n"
"       nepenc eval MODEL.onnx --data SPEC [OPTION]...\n"
"       nepenc finetune MODEL.onnx -o OUT.onnx --data SPEC [OPTION]...\n"
"       nepenc profile MODEL.onnx --data SPEC [--json] [OPTION]...\n"
"\n"
"nepenc reads a trained ONNX model, prunes it with NEPENTHE (entropy-guided\n"
"unstructured pruning), removes the layers whose rectifiers reach zero\n"
"entropy, folds the linear operators left back to back, and writes a\n"
"shallower ONNX model.\n"
"\n"
"Commands:\n"
"  inspect                print opset, inputs/outputs, node count by op,\n"
"                         parameter count and the rectified layers\n"
"  eval                   top-1 accuracy and mean loss on labelled data\n"
"  finetune               fine-tune (SGD) without pruning, write the model\n"
"  profile                entropy of every rectified layer on --data\n"
"\n"
"Output:\n"
"  -o, --output FILE      write the resulting model to FILE (via a temporary\n"
"                         file beside it, renamed at the end)\n"
"      --passes P         'default' (NEPENTHE, linearize, fold) or 'none':\n"
"                         write the model back through nepenc's IR unchanged\n"
"      --external-data    store initializers in FILE.data beside the output\n"
"                         (automatic when the model exceeds 2 GiB)\n"
"      --json             print one JSON document on stdout\n"
"\n"
"Dependencies (for make; the rule lists the model, its external data,\n"
"every data file and the run configuration, and an empty rule for each\n"
"but the model, as gcc -MP; written only when the run succeeds):\n"
"  -MD                    write the rule to OUT.d (OUT: the -o file)\n"
"  -MF FILE               write the rule to FILE\n"
"  -MT TARGET             the rule's target, as given (default: the -o file)\n"
"      --depfile FILE     the same as -MD -MF FILE\n"
"  -MP                    accepted as gcc's (the empty rules are always there)\n"
"\n"
"Run configuration (XML, schema nepenc-config.rng; one element per long\n"
"option, e.g. <nepenc><data>idx:I,L</data><zeta>0.5</zeta></nepenc>;\n"
"relative paths are relative to its folder; flags override it):\n"
"      --config FILE      read FILE; without it nepenc reads MODEL.nepenc.xml\n"
"                         (model.onnx -> model.nepenc.xml) beside the model,\n"
"                         else ./nepenc.xml, if there is one\n"
"\n"
"Data (SPEC: idx:IMAGES[,LABELS]  cifar10:DIR  npy:X.npy[,Y.npy]  pb:DIR\n"
"      folder:DIR, PNG/JPEG images in one sub-folder per class):\n"
"      --data SPEC        training data (eval: the data to score)\n"
"      --val SPEC         validation data (default: the last 1/12 of --data)\n"
"      --test SPEC        test data, scored at the end only\n"
"      --scale S          multiply uint8 pixels by S (default 1/255)\n"
"      --mean M[,M...]    subtract per-channel means after scaling\n"
"      --std S[,S...]     then divide by per-channel deviations\n"
"      --limit N          use only the first N examples\n"
"      --batch N          batch size (default 128)\n"
"      --threads N        threads (default: all cores)\n"
"\n"
"Image folders (as torchvision: Resize, CenterCrop, ToTensor, Normalize):\n"
"      --resize N         scale the shorter side to N pixels (bilinear)\n"
"      --crop N           centre N x N crop (random when --augment is on)\n"
"      --classes FILE     class names in label order, one a line\n"
"                         (default: the sub-folders sorted by name)\n"
"      --skip-bad-images  leave out images that do not decode (a first\n"
"                         pass decodes every one), and say how many\n"
"      --workers N        decoding threads (default: one per core)\n"
"\n"
"Training:\n"
"      --epochs N         epochs (default 1)\n"
"      --optimizer O      sgd (default) or adamw (PyTorch's AdamW)\n"
"      --lr X             learning rate (default 0.01; adamw 0.001)\n"
"      --momentum X       SGD momentum (default 0.9)\n"
"      --weight-decay X   SGD: L2 weight decay (default 1e-4); adamw:\n"
"                         decoupled weight decay (default 0.01)\n"
"      --nesterov         Nesterov momentum\n"
"      --beta1 X          AdamW's first-moment decay (default 0.9)\n"
"      --beta2 X          AdamW's second-moment decay (default 0.999)\n"
"      --adam-eps X       AdamW's epsilon, added to sqrt(v) (default 1e-8)\n"
"      --lr-schedule S    constant (default), cosine, or step:EPOCHS:GAMMA\n"
"      --warmup N         linear warmup over the first N steps (batches),\n"
"                         before the schedule (default 0: none)\n"
"      --precision P      fp32 (default) or bf16 (Conv, Gemm, MatMul on\n"
"                         bf16 copies; needs AVX512_BF16 or AMX)\n"
"      --augment LIST     flip and/or shift=N, comma-separated (default none)\n"
"      --temperature T    distillation temperature without labels (default 4)\n"
"      --seed N           seed of shuffling and augmentation (default 0)\n"
"      --bucket-mib X     under mpirun: gradients summed in buckets of X MiB,\n"
"                         each started during backward (default 25; 0: one\n"
"                         sum after backward)\n"
"\n"
"NEPENTHE:\n"
"      --zeta Z           fraction of the prunable weights removed per\n"
"                         iteration (default 0.5)\n"
"      --theta T          keep validation top-1 >= T x dense (default 0.99)\n"
"      --max-iter N       iterations at most, retries included (default 10)\n"
"      --backoff N        on a failed iterate: restore the last good one,\n"
"                         halve zeta, go on; N retries (default 2; 0 = the\n"
"                         paper's rule: stop)\n"
"      --entropy-eps E    also remove layers with entropy <= E bits, each\n"
"                         neuron to its majority state (default 0)\n"
"      --method M         nepenthe (default), imp (global magnitude) or\n"
"                         easier (one layer of lowest entropy linearized\n"
"                         per iteration, fine-tuned, undone if below theta)\n"
"      --criterion C      magnitude (default) or wanda\n"
"                         (|w| x input-feature norm)\n"
"      --no-entropy-budget    budget proportional to layer size (ablation)\n"
"      --no-neuron-selection  also prune zero-entropy neurons (ablation)\n"
"      --min-live F       no-collapse budget: every neuron keeps at least\n"
"                         F of its prunable weights, and one, live; what a\n"
"                         layer cannot take goes to the others (default 0:\n"
"                         off)\n"
"      --easier-map MAP   --method easier, a layer above zero entropy becomes\n"
"                         identity (default) or majority (each neuron its\n"
"                         majority state); at zero entropy its exact map\n"
"      --no-dont-care     count z == 0 as OFF (ablation; default: not counted)\n"
"      --fold F           exact (default), approx (also Conv -> padded Conv,\n"
"                         kept if theta holds) or none\n"
"      --report FILE      write the run report (XML, RelaxNG schema shipped)\n"
"      --plot FILE        write per-layer entropy and neuron states (SVG)\n"
"\n"
"  -q, --quiet            print nothing on success\n"
"  -v, --verbose          print more detail\n"
"  -h, --help             print this help and exit\n"
"  -V, --version          print the version of nepenc and its libraries\n"
"\n"
"Exit status: 0 on success, 1 if the run failed, 2 on a usage error.\n"
"Errors are one line: 'nepenc: FILE: what went wrong'.\n", out);
}

static void np_print_version(void)
{
	const dnnl_version_t *dv = dnnl_version();
	int xv = atoi(xmlParserVersion);
	printf("nepenc %s\n", PACKAGE_VERSION);
	printf("oneDNN %d.%d.%d (%s)\n", dv->major, dv->minor, dv->patch,
	       dv->hash ? dv->hash : "");
	printf("protobuf-c %s\n", protobuf_c_version());
	printf("libxml2 %d.%d.%d\n", xv / 10000, xv / 100 % 100, xv % 100);
	/* Data-parallel runs under mpirun/srun (runtime/dist.h). */
	if (np_dist_built())
		printf("MPI %s\n", np_dist_library());
	else
		printf("MPI no (built without it: configure --with-mpi)\n");
}

/* ------------------------------------------------------------ values */

static bool np_parse_double(const char *s, double *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || *end || !isfinite(v))
		return false;
	*out = v;
	return true;
}

static bool np_parse_int(const char *s, int64_t lo, int64_t hi, int64_t *out)
{
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno || end == s || *end || v < lo || v > hi)
		return false;
	*out = v;
	return true;
}

/* "0.5" or "0.4914,0.4822,0.4465" */
static bool np_parse_list(const char *s, double *out, int *n)
{
	char buf[512];
	snprintf(buf, sizeof buf, "%s", s);
	*n = 0;
	for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		if (*n == NP_DATA_MAX_CHANNELS || !np_parse_double(tok, &out[*n]))
			return false;
		(*n)++;
	}
	return *n > 0;
}

static bool np_parse_schedule(const char *s, np_train_opts *t)
{
	if (strcmp(s, "constant") == 0) {
		t->schedule = NP_LR_CONSTANT;
		return true;
	}
	if (strcmp(s, "cosine") == 0) {
		t->schedule = NP_LR_COSINE;
		return true;
	}
	int step;
	float gamma;
	char tail;
	if (sscanf(s, "step:%d:%f%c", &step, &gamma, &tail) == 2 && step > 0 &&
	    gamma > 0) {
		t->schedule = NP_LR_STEP;
		t->step_epochs = step;
		t->gamma = gamma;
		return true;
	}
	return false;
}

static bool np_parse_augment(const char *s, np_augment *a)
{
	char buf[256];
	snprintf(buf, sizeof buf, "%s", s);
	for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		int64_t v;
		if (strcmp(tok, "flip") == 0)
			a->flip = true;
		else if (strncmp(tok, "shift=", 6) == 0 && np_parse_int(tok + 6, 0, 16, &v))
			a->shift = (int)v;
		else if (strcmp(tok, "none") != 0)
			return false;
	}
	return true;
}

static void np_cli_defaults(np_cli *c)
{
	memset(c, 0, sizeof *c);
	c->batch = 128;
	c->train.epochs = 1;
	c->train.batch = 128;
	c->train.sgd = (np_sgd){.lr = 0.01f, .momentum = 0.9f, .weight_decay = 1e-4f,
	                        .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f};
	c->train.schedule = NP_LR_CONSTANT;
	c->train.temperature = 4.0f;
	c->train.bucket_bytes = (size_t)NP_DEFAULT_BUCKET_MIB << 20;
	c->zeta = 0.5;
	c->theta = 0.99;
	c->max_iter = 10;
	c->backoff = 2;
	c->passes = "default";
}

/* One option's value into c.  On a bad value returns false with the
 * reason in why; label names the option as the user wrote it ("--zeta" on
 * the command line, "<zeta>" in the configuration file). */
static bool np_cli_set(np_cli *c, int id, const char *label, const char *arg,
                       char *why, size_t size)
{
	double d;
	int64_t i;
	switch (id) {
	case 'o': c->output = arg; return true;
	case 'q': c->quiet = true; return true;
	case 'v': c->verbose = true; return true;
	case OPT_PASSES: c->passes = arg; return true;
	case OPT_EXTERNAL_DATA: c->external_data = true; return true;
	case OPT_JSON: c->json = true; return true;
	case OPT_DATA: c->data = arg; return true;
	case OPT_VAL: c->val = arg; return true;
	case OPT_TEST: c->test = arg; return true;
	case OPT_NESTEROV: c->train.sgd.nesterov = c->sgd_set = true; return true;
	case OPT_NO_DONT_CARE: c->no_dont_care = true; return true;
	case OPT_NO_ENTROPY_BUDGET: c->no_entropy_budget = true; return true;
	case OPT_NO_NEURON_SELECTION: c->no_neuron_selection = true; return true;
	case OPT_REPORT: c->report = arg; return true;
	case OPT_PLOT: c->plot = arg; return true;
	case OPT_CONFIG: c->config = arg; return true;
	case OPT_DEPFILE: c->depfile = arg; return true;
	case OPT_CLASSES: c->dopts.classes = arg; return true;
	case OPT_SKIP_BAD_IMAGES: c->dopts.skip_bad = true; return true;
	case OPT_RESIZE:
		if (np_parse_int(arg, 1, 65535, &i)) { c->dopts.resize = (int)i; return true; }
		break;
	case OPT_CROP:
		if (np_parse_int(arg, 1, 65535, &i)) { c->dopts.crop = (int)i; return true; }
		break;
	case OPT_WORKERS:
		if (np_parse_int(arg, 1, 64, &i)) { c->dopts.workers = (int)i; return true; }
		break;
	case OPT_ZETA:
		if (np_parse_double(arg, &d) && d > 0 && d < 1) { c->zeta = d; return true; }
		break;
	case OPT_THETA:
		if (np_parse_double(arg, &d) && d > 0 && d <= 1) { c->theta = d; return true; }
		break;
	case OPT_ENTROPY_EPS:
		if (np_parse_double(arg, &d) && d >= 0) { c->entropy_eps = d; return true; }
		break;
	case OPT_MAX_ITER:
		if (np_parse_int(arg, 0, 1000, &i)) { c->max_iter = (int)i; return true; }
		break;
	case OPT_BACKOFF:
		if (np_parse_int(arg, 0, 100, &i)) { c->backoff = (int)i; return true; }
		break;
	case OPT_METHOD:
		if (strcmp(arg, "nepenthe") == 0) { c->method = NP_METHOD_NEPENTHE; return true; }
		if (strcmp(arg, "imp") == 0) { c->method = NP_METHOD_IMP; return true; }
		if (strcmp(arg, "easier") == 0) { c->method = NP_METHOD_EASIER; return true; }
		break;
	case OPT_EASIER_MAP:
		if (strcmp(arg, "identity") == 0) { c->easier_map = NP_MAP_IDENTITY; return true; }
		if (strcmp(arg, "majority") == 0) { c->easier_map = NP_MAP_MAJORITY; return true; }
		break;
	case OPT_MIN_LIVE:
		if (np_parse_double(arg, &d) && d >= 0 && d < 1) { c->min_live = d; return true; }
		break;
	case OPT_CRITERION:
		if (strcmp(arg, "magnitude") == 0) { c->criterion = NP_CRIT_MAGNITUDE; return true; }
		if (strcmp(arg, "wanda") == 0) { c->criterion = NP_CRIT_WANDA; return true; }
		break;
	case OPT_FOLD:
		if (strcmp(arg, "exact") == 0) { c->fold = NP_FOLD_EXACT; return true; }
		if (strcmp(arg, "approx") == 0) { c->fold = NP_FOLD_APPROX; return true; }
		if (strcmp(arg, "none") == 0) { c->fold = NP_FOLD_NONE; return true; }
		break;
	case OPT_MEAN:
		if (np_parse_list(arg, c->dopts.mean, &c->dopts.n_mean)) return true;
		break;
	case OPT_STD:
		if (np_parse_list(arg, c->dopts.std, &c->dopts.n_std)) {
			for (int k = 0; k < c->dopts.n_std; k++)
				if (c->dopts.std[k] <= 0)
					return snprintf(why, size, "%s must be positive, got '%s'",
					                label, arg), false;
			return true;
		}
		break;
	case OPT_SCALE:
		if (np_parse_double(arg, &d) && d > 0) { c->dopts.scale = d; return true; }
		break;
	case OPT_LIMIT:
		if (np_parse_int(arg, 1, INT64_MAX, &i)) { c->dopts.limit = i; return true; }
		break;
	case OPT_BATCH:
		if (np_parse_int(arg, 1, 1 << 20, &i)) { c->batch = c->train.batch = i; return true; }
		break;
	case OPT_THREADS:
		if (np_parse_int(arg, 1, 1024, &i)) { c->threads = (int)i; return true; }
		break;
	case OPT_SEED:
		if (np_parse_int(arg, 0, INT64_MAX, &i)) { c->train.seed = (uint64_t)i; return true; }
		break;
	case OPT_EPOCHS:
		if (np_parse_int(arg, 0, 100000, &i)) { c->train.epochs = (int)i; return true; }
		break;
	case OPT_LR:
		if (np_parse_double(arg, &d) && d >= 0) {
			c->train.sgd.lr = (float)d;
			c->lr_set = true;
			return true;
		}
		break;
	case OPT_MOMENTUM:
		if (np_parse_double(arg, &d) && d >= 0 && d < 1) {
			c->train.sgd.momentum = (float)d;
			c->sgd_set = true;
			return true;
		}
		break;
	case OPT_WEIGHT_DECAY:
		if (np_parse_double(arg, &d) && d >= 0) {
			c->train.sgd.weight_decay = (float)d;
			c->wd_set = true;
			return true;
		}
		break;
	case OPT_OPTIMIZER:
		if (strcmp(arg, "sgd") == 0) { c->train.sgd.optimizer = NP_OPTIM_SGD; return true; }
		if (strcmp(arg, "adamw") == 0) { c->train.sgd.optimizer = NP_OPTIM_ADAMW; return true; }
		break;
	case OPT_BETA1:
	case OPT_BETA2:
		if (np_parse_double(arg, &d) && d >= 0 && d < 1) {
			*(id == OPT_BETA1 ? &c->train.sgd.beta1 : &c->train.sgd.beta2) = (float)d;
			c->adam_set = true;
			return true;
		}
		break;
	case OPT_ADAM_EPS:
		if (np_parse_double(arg, &d) && d > 0 && (float)d > 0) {
			c->train.sgd.eps = (float)d;
			c->adam_set = true;
			return true;
		}
		break;
	case OPT_WARMUP:
		if (np_parse_int(arg, 0, 1000000000, &i)) { c->train.warmup = i; return true; }
		break;
	case OPT_BUCKET_MIB:
		if (np_parse_double(arg, &d) && d >= 0 && d <= 1024) {
			size_t bytes = (size_t)(d * 1048576.0);
			c->train.bucket_bytes = d > 0 && bytes == 0 ? 1 : bytes;
			return true;
		}
		break;
	case OPT_TEMPERATURE:
		if (np_parse_double(arg, &d) && d > 0) { c->train.temperature = (float)d; return true; }
		break;
	case OPT_LR_SCHEDULE:
		if (np_parse_schedule(arg, &c->train)) return true;
		break;
	case OPT_PRECISION:
		if (strcmp(arg, "bf16") == 0 && !np_rt_bf16_supported())
			return snprintf(why, size, "%s bf16 needs a CPU with AVX512_BF16 "
			                "or AMX; oneDNN runs %s here", label,
			                np_rt_isa_name()), false;
		if (strcmp(arg, "fp32") == 0 || strcmp(arg, "bf16") == 0) {
			c->bf16 = arg[0] == 'b';
			return true;
		}
		break;
	case OPT_AUGMENT:
		if (np_parse_augment(arg, &c->train.augment)) return true;
		break;
	}
	snprintf(why, size, "invalid value '%s' for %s", arg, label);
	return false;
}

static const np_opt *np_opt_by_id(int id)
{
	for (size_t i = 0; i < NP_N_OPTS; i++)
		if (np_opts[i].lo.val == id)
			return &np_opts[i];
	return NULL;
}

static np_command_id np_command_of(int argc, char **argv, int *skip)
{
	*skip = 0;
	if (argc >= 2)
		for (int k = NP_CMD_INSPECT; k <= NP_CMD_PROFILE; k++)
			if (strcmp(argv[1], np_command_names[k]) == 0) {
				*skip = 1;
				return (np_command_id)k;
			}
	return NP_CMD_COMPILE;
}

static const np_opt *np_opt_by_name(const char *name)
{
	for (size_t i = 0; i < NP_N_OPTS; i++)
		if (strcmp(np_opts[i].lo.name, name) == 0)
			return &np_opts[i];
	return NULL;
}

/* ------------------------------------------------- -MD -MF -MT pre-pass */

/* The gcc spellings getopt_long would read as clusters (-MD = -M -D).
 * Dependency flags found in argv are recorded in c and removed from it. */
typedef struct np_dep_flags {
	bool md, mf;       /* -MD; -MF or --depfile given */
	int n_mt;
	const char *first; /* for "does not apply" */
} np_dep_flags;

/* Does argument a (an option) take the next argument as its value? */
static bool np_takes_value(const char *a)
{
	if (a[1] != '-') {   /* short cluster: -qvo FILE */
		for (const char *p = a + 1; *p; p++)
			if (*p == 'o')
				return p[1] == '\0';
			else if (!strchr("qvhV", *p))
				return false;
		return false;
	}
	if (strchr(a, '='))
		return false;
	/* An exact name, or an abbreviation of one name only (an ambiguous
	 * one is getopt's error to report). */
	const np_opt *hit = NULL;
	int hits = 0;
	size_t n = strlen(a + 2);
	for (size_t i = 0; i < NP_N_OPTS; i++)
		if (strncmp(np_opts[i].lo.name, a + 2, n) == 0) {
			hit = &np_opts[i];
			hits++;
			if (strlen(hit->lo.name) == n) {
				hits = 1;
				break;
			}
		}
	return hits == 1 && hit->lo.has_arg == required_argument;
}

/* -MF FILE / -MFFILE (likewise -MT); *val NULL when the value is missing. */
static bool np_dep_value(const char *flag, int argc, char **argv, int *i,
                         const char **val)
{
	if (strncmp(argv[*i], flag, 3) != 0)
		return false;
	if (argv[*i][3])
		*val = argv[*i] + 3;
	else
		*val = *i + 1 < argc ? argv[++*i] : NULL;
	return true;
}

static int np_dep_prepass(np_cli *c, np_dep_flags *df, int *argc, char **argv)
{
	int out = 1;
	bool done = false;
	for (int i = 1; i < *argc; i++) {
		const char *a = argv[i], *val = NULL;
		if (done || a[0] != '-' || !a[1]) {
			argv[out++] = argv[i];
			continue;
		}
		if (strcmp(a, "--") == 0) {
			done = true;
			argv[out++] = argv[i];
		} else if (strcmp(a, "-MD") == 0 || strcmp(a, "-MP") == 0) {
			/* -MP is accepted for gcc habits: the empty rules are
			 * always written. */
			df->md |= a[2] == 'D';
			df->first = df->first ? df->first : a;
		} else if (np_dep_value("-MF", *argc, argv, &i, &val) ||
		           np_dep_value("-MT", *argc, argv, &i, &val)) {
			bool mf = a[2] == 'F';
			if (!val)
				return np_usage("%s: option %.3s needs a %s", c->command_name, a,
				                mf ? "file name" : "target");
			df->first = df->first ? df->first : (mf ? "-MF" : "-MT");
			if (mf) {
				df->mf = true;
				c->depfile = val;
			} else {
				c->dep_target = df->n_mt++ ? np_arena_printf(c->arena, "%s %s",
				                                             c->dep_target, val) : val;
			}
		} else {
			argv[out++] = argv[i];
			if (np_takes_value(a) && i + 1 < *argc)
				argv[out++] = argv[++i];
		}
	}
	argv[out] = NULL;
	*argc = out;
	return 0;
}

/* After the configuration: where the rule goes. */
static int np_dep_settle(np_cli *c, const np_dep_flags *df)
{
	if ((df->first || c->depfile) && !(C_OUT & (1u << c->command)))
		return np_usage("option %s does not apply to '%s'",
		                df->first ? df->first : "--depfile", c->command_name);
	if (df->md && !c->depfile && c->output)
		c->depfile = np_arena_printf(c->arena, "%s.d", c->output);
	if (df->n_mt && !c->depfile)
		return np_usage("-MT sets the target of a dependency rule: add -MD, "
		                "-MF FILE or --depfile FILE");
	return 0;
}

/* ------------------------------------------------- the configuration */

/* The file of section 8: --config FILE, else MODEL.nepenc.xml, else
 * ./nepenc.xml; NULL when there is none. */
static const char *np_config_find(const np_cli *c)
{
	if (c->config)
		return c->config;
	const char *beside = np_runconfig_beside(c->arena, c->model);
	if (np_runconfig_exists(beside))
		return beside;
	if (np_runconfig_exists("nepenc.xml"))
		return "nepenc.xml";
	return NULL;
}

__attribute__((format(printf, 3, 4)))
static int np_config_error(const char *file, int line, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "nepenc: %s:%d: ", file, line);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	return 2;
}

/* Settings of the file the command takes and the command line left
 * unset; a switch is set by "true" or "1". */
static int np_config_apply(np_cli *c, const bool *given)
{
	for (int k = 0; k < c->conf.n; k++) {
		const np_setting *s = &c->conf.v[k];
		const np_opt *o = np_opt_by_name(s->name);
		if (!o || given[o->lo.val] || !(o->commands & (1u << c->command)))
			continue;
		if (o->lo.has_arg == no_argument &&
		    strcmp(s->value, "true") != 0 && strcmp(s->value, "1") != 0)
			continue;
		if (s->escapes)
			return np_config_error(c->conf.path, s->line, "<%s> '%s' "
			                       "leaves the folder of this run "
			                       "configuration, which nepenc found "
			                       "by itself: give it with --%s or read "
			                       "the file with --config", s->name,
			                       s->value, s->name);
		char why[256], label[64];
		snprintf(label, sizeof label, "<%s>", s->name);
		if (!np_cli_set(c, o->lo.val, label, s->value, why, sizeof why))
			return np_config_error(c->conf.path, s->line, "%s", why);
	}
	return 0;
}

static int np_config_read(np_cli *c, const bool *given)
{
	if (c->command == NP_CMD_INSPECT)
		return 0;
	const char *path = np_config_find(c);
	if (!path)
		return 0;
	const char *known[NP_N_OPTS + 1];
	size_t n = 0;
	for (size_t i = 0; i < NP_N_OPTS; i++)
		if (np_opts[i].lo.val != 'h' && np_opts[i].lo.val != 'V' &&
		    np_opts[i].lo.val != OPT_CONFIG)
			known[n++] = np_opts[i].lo.name;
	known[n] = NULL;
	np_error err = {0};
	/* A file found beside the model (or here) came with it; only one
	 * named by --config may send outputs out of its folder. */
	if (np_runconfig_load(path, known, !c->config, &c->conf, &err) != NP_OK) {
		fprintf(stderr, "nepenc: %s: %s\n", err.file[0] ? err.file : path, err.msg);
		return 2;
	}
	return np_config_apply(c, given);
}

/* No data anywhere: say where nepenc looked. */
static int np_no_data(const np_cli *c)
{
	if (c->conf.path)
		return np_usage("%s: no data source: no --data SPEC, and the run "
		                "configuration '%s' has no <data>", c->command_name,
		                c->conf.path);
	return np_usage("%s: no data source: no --data SPEC, no --config FILE, "
	                "no '%s' beside the model, no './nepenc.xml'",
	                c->command_name, np_runconfig_beside(c->arena, c->model));
}

/* ------------------------------------------------------------ the rest */

static int np_cli_model(np_cli *c, int argc, char **argv)
{
	if (optind == argc)
		return np_usage("%s: no input model", c->command_name);
	if (optind < argc - 1)
		return np_usage("%s: one input model expected, got also '%s'",
		                c->command_name, argv[optind + 1]);
	c->model = argv[optind];
	return 0;
}

/* What --passes none still takes: it writes the model back through the
 * IR, so an option of the NEPENTHE job given with it would be ignored. */
static bool np_passes_none_takes(int id)
{
	switch (id) {
	case 'o': case 'q': case 'v': case OPT_PASSES: case OPT_EXTERNAL_DATA:
	case OPT_JSON: case OPT_CONFIG: case OPT_DEPFILE:
		return true;
	default:
		return false;
	}
}

/* The options of the masking methods that EASIER (one layer linearized
 * per step, no weight pruned) does not have, and the two that belong to
 * one method: given on the command line with another, a usage error. */
static int np_cli_method_options(const np_cli *c, const bool *given)
{
	static const int masking[] = {OPT_ZETA, OPT_BACKOFF, OPT_CRITERION,
	                              OPT_NO_ENTROPY_BUDGET, OPT_NO_NEURON_SELECTION,
	                              OPT_MIN_LIVE};
	for (size_t k = 0; c->method == NP_METHOD_EASIER &&
	                   k < sizeof masking / sizeof masking[0]; k++)
		if (given[masking[k]])
			return np_usage("--%s does not apply to --method easier (it "
			                "linearizes one layer per iteration and prunes "
			                "no weight)", np_opt_by_id(masking[k])->lo.name);
	if (given[OPT_EASIER_MAP] && c->method != NP_METHOD_EASIER)
		return np_usage("--easier-map applies to --method easier only");
	if (given[OPT_MIN_LIVE] && c->method == NP_METHOD_IMP)
		return np_usage("--min-live does not apply to --method imp (global "
		                "magnitude pruning has no per-layer budget to cap)");
	return 0;
}

/* Options that cannot apply together; given: what the command line set
 * (a setting of the configuration file the run does not use is ignored,
 * as for any command). */
static int np_cli_conflicts(const np_cli *c, const bool *given)
{
	if (c->command != NP_CMD_COMPILE)
		return 0;
	if (strcmp(c->passes, "none") == 0)
		for (size_t i = 0; i < NP_N_OPTS; i++) {
			int id = np_opts[i].lo.val;
			if (given[id] && !np_passes_none_takes(id))
				return np_usage("--passes none writes the model back unchanged: "
				                "--%s does not apply to it", np_opts[i].lo.name);
		}
	/* DESIGN section 11: options a method does not have are refused. */
	if (c->method == NP_METHOD_IMP && (c->no_entropy_budget || c->no_neuron_selection))
		return np_usage("--%s does not apply to --method imp (global magnitude "
		                "pruning has no entropy budget and no neuron selection)",
		                c->no_entropy_budget ? "no-entropy-budget" : "no-neuron-selection");
	return np_cli_method_options(c, given);
}

/* The optimizer's options, once flags and file are merged: those of the
 * other optimizer are refused (never ignored), and AdamW takes PyTorch's
 * defaults for what was not set (lr 1e-3, weight decay 1e-2). */
static int np_cli_optimizer(np_cli *c)
{
	if (!((1u << c->command) & C_TRAIN))
		return 0;
	if (c->train.sgd.optimizer == NP_OPTIM_SGD) {
		if (c->adam_set)
			return np_usage("--beta1, --beta2 and --adam-eps apply to "
			                "--optimizer adamw, not sgd");
		return 0;
	}
	if (c->sgd_set)
		return np_usage("--momentum and --nesterov apply to --optimizer sgd, "
		                "not adamw (its moments: --beta1, --beta2)");
	if (!c->lr_set)
		c->train.sgd.lr = 1e-3f;
	if (!c->wd_set)
		c->train.sgd.weight_decay = 1e-2f;
	return 0;
}

/* Required options per command, once flags and file are merged. */
static int np_cli_check(np_cli *c)
{
	bool needs_out = c->command == NP_CMD_COMPILE || c->command == NP_CMD_FINETUNE;
	if (needs_out && !c->output)
		return np_usage("no output file: use -o OUT.onnx");
	if (c->dopts.n_mean != c->dopts.n_std)
		return np_usage("--mean and --std must have the same number of values");
	if (c->command == NP_CMD_COMPILE && strcmp(c->passes, "none") != 0 &&
	    strcmp(c->passes, "default") != 0)
		return np_usage("--passes takes 'default' or 'none', got '%s'", c->passes);
	bool needs_data = c->command == NP_CMD_EVAL || c->command == NP_CMD_FINETUNE ||
	                  c->command == NP_CMD_PROFILE ||
	                  (c->command == NP_CMD_COMPILE && strcmp(c->passes, "none") != 0);
	if (needs_data && !c->data)
		return np_no_data(c);
	return 0;
}

/* getopt_long over argv (the pre-passed copy); given[id] records what the
 * command line set, so that the configuration file does not override it. */
static int np_cli_options(np_cli *c, int argc, char **argv, bool *given)
{
	struct option lo[NP_N_OPTS + 1];
	for (size_t i = 0; i < NP_N_OPTS; i++)
		lo[i] = np_opts[i].lo;
	memset(&lo[NP_N_OPTS], 0, sizeof lo[0]);
	int id, li = -1;
	optind = 1;
	opterr = 0;   /* getopt would print argv[0]; we say "nepenc" */
	while ((id = getopt_long(argc, argv, "o:qvhV", lo, &li)) != -1) {
		if (id == '?' || id == ':') {
			const char *bad = argv[optind - 1];
			if (optopt && bad[0] == '-' && bad[1] != '-')
				return np_usage("%s: invalid option -- '%c'", c->command_name, optopt);
			return np_usage("%s: %s '%s'", c->command_name,
			                id == ':' ? "option needs a value:" : "unrecognized option",
			                bad);
		}
		if (id == 'h') {
			np_cli_help(stdout);
			return -1;
		}
		if (id == 'V') {
			np_print_version();
			return -1;
		}
		const np_opt *o = np_opt_by_id(id);
		if (!(o->commands & (1u << c->command)))
			return np_usage("option --%s does not apply to '%s'", o->lo.name,
			                c->command_name);
		char why[256], label[64];
		snprintf(label, sizeof label, "--%s", o->lo.name);
		if (!np_cli_set(c, id, label, optarg, why, sizeof why))
			return np_usage("%s", why);
		given[id] = true;
	}
	return 0;
}

static int np_cli_run(np_cli *c, int argc, char **argv)
{
	int skip;
	c->command = np_command_of(argc, argv, &skip);
	c->command_name = np_command_names[c->command];
	argc -= skip;
	argv += skip;
	/* A copy: the pre-pass removes the dependency flags. */
	char **av = np_arena_alloc(c->arena, (size_t)(argc + 1) * sizeof *av);
	memcpy(av, argv, (size_t)argc * sizeof *av);
	np_dep_flags df = {0};
	bool given[OPT_END] = {0};
	int rc = np_dep_prepass(c, &df, &argc, av);
	if (rc == 0)
		rc = np_cli_options(c, argc, av, given);
	if (rc == 0)
		rc = np_cli_model(c, argc, av);
	if (rc == 0)
		rc = np_config_read(c, given);
	if (rc == 0)
		rc = np_dep_settle(c, &df);
	if (rc == 0)
		rc = np_cli_conflicts(c, given);
	if (rc == 0)
		rc = np_cli_optimizer(c);
	return rc ? rc : np_cli_check(c);
}

int np_cli_parse(np_cli *c, int argc, char **argv)
{
	np_cli_defaults(c);
	c->arena = np_arena_new();
	return np_cli_run(c, argc, argv);
}

void np_cli_free(np_cli *c)
{
	np_runconfig_free(&c->conf);
	np_arena_free(c->arena);
	c->arena = NULL;
}
