/* bf16_kernels.c - times oneDNN 2.6 convolution passes (forward,
 * backward data, backward weights), BatchNormalization, ReLU and binary
 * Add in f32 and bf16 on the shapes given; built and run by
 * bench/bf16-kernels (read it first).  Not part of nepenc.
 *
 * stdin: oneDNN verbose convolution descriptors, one a line
 * ("mb128_ic64oc64_ih32oh32kh3sh1dh0ph1_iw32ow32kw3sw1dw0pw1", or with
 * "g32" after "mb128_" for groups).  argv[1]: "conv" (every pass and
 * layout, and the f32 <-> bf16 NHWC reorders), "bw" (backward weights
 * only) or "pw" (BN, ReLU, Add on each output shape).  Prints one line
 * per measurement: descriptor, what, configuration, the impl oneDNN
 * picked, ms: the median of REPS (env, default 5) runs after a warm-up,
 * or their minimum with MIN set (less sensitive to other processes).
 * Configurations: f32_runtime (nepenc's f32 layouts: nChw16c where the
 * channels are a multiple of 16, else plain; weights "any"), bf16_any
 * (every layout "any"), bf16_nhwc, and for backward weights mixed_* (bf16
 * src and dY, f32 dW and dB) with "any", NHWC or nepenc's blocked
 * layouts.  Exits 1 with a message on any oneDNN error. */
#define _POSIX_C_SOURCE 200809L
#include <dnnl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CK(x) do { dnnl_status_t s_ = (x); if (s_) { fprintf(stderr, "%s:%d %s: %d\n", __FILE__, __LINE__, #x, (int)s_); exit(1);} } while (0)

static dnnl_engine_t eng;
static dnnl_stream_t strm;
static int reps = 5, use_min;
static double pick(double *t);

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1e3 + t.tv_nsec / 1e6; }
static int cmpd(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return x < y ? -1 : x > y; }

static dnnl_memory_t mk(const dnnl_memory_desc_t *md)
{
	dnnl_memory_t m; void *p;
	CK(dnnl_memory_create(&m, md, eng, DNNL_MEMORY_ALLOCATE));
	CK(dnnl_memory_get_data_handle(m, &p));
	if (p) memset(p, 0x3c, dnnl_memory_desc_get_size(md));
	return m;
}

/* times primitive from pd with args bound to fresh memories of the pd's
 * mds (args: list of DNNL_ARG_* with query). */
typedef struct { int arg; dnnl_query_t q; } qa;
static double run_pd(dnnl_primitive_desc_t pd, const qa *a, int na, const char **impl)
{
	dnnl_primitive_t p; dnnl_exec_arg_t args[12]; int n = 0;
	CK(dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, impl));
	for (int i = 0; i < na; i++) {
		const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(pd, a[i].q, 0);
		if (!md || md->ndims == 0) continue;
		args[n].arg = a[i].arg; args[n].memory = mk(md); n++;
	}
	const dnnl_memory_desc_t *ws = dnnl_primitive_desc_query_md(pd, dnnl_query_workspace_md, 0);
	if (ws && ws->ndims) { args[n].arg = DNNL_ARG_WORKSPACE; args[n].memory = mk(ws); n++; }
	CK(dnnl_primitive_create(&p, pd));
	double t[64];
	for (int r = -1; r < reps; r++) {
		double t0 = now();
		CK(dnnl_primitive_execute(p, strm, n, args));
		CK(dnnl_stream_wait(strm));
		if (r >= 0) t[r] = now() - t0;
	}
	qsort(t, reps, sizeof t[0], cmpd);
	dnnl_primitive_destroy(p);
	for (int i = 0; i < n; i++) dnnl_memory_destroy(args[i].memory);
	return pick(t);
}

typedef struct { long mb, g, ic, oc, ih, oh, kh, sh, dh, ph, iw, ow, kw, sw, dw, pw; } shp;

static void md4(dnnl_memory_desc_t *md, long n, long c, long h, long w, dnnl_data_type_t dt, dnnl_format_tag_t tag)
{
	dnnl_dims_t d = {n, c, h, w};
	CK(dnnl_memory_desc_init_by_tag(md, 4, d, dt, tag));
}
static void mdw(dnnl_memory_desc_t *md, const shp *s, dnnl_data_type_t dt)
{
	if (s->g > 1) {
		dnnl_dims_t d = {s->g, s->oc / s->g, s->ic / s->g, s->kh, s->kw};
		CK(dnnl_memory_desc_init_by_tag(md, 5, d, dt, dnnl_format_tag_any));
	} else {
		dnnl_dims_t d = {s->oc, s->ic, s->kh, s->kw};
		CK(dnnl_memory_desc_init_by_tag(md, 4, d, dt, dnnl_format_tag_any));
	}
}

/* cfg: name, activation dtype, src tag, dst tag, weights-grad dtype */
static void conv(const char *desc, const shp *s, const char *cfg, dnnl_data_type_t dt,
                 dnnl_format_tag_t stag, dnnl_format_tag_t dtag, dnnl_data_type_t dwdt, int passes)
{
	dnnl_memory_desc_t src, wei, dst, dwei, bias;
	md4(&src, s->mb, s->ic, s->ih, s->iw, dt, stag);
	md4(&dst, s->mb, s->oc, s->oh, s->ow, dt, dtag);
	mdw(&wei, s, dt);
	mdw(&dwei, s, dwdt);
	dnnl_dims_t bd = {s->oc};
	CK(dnnl_memory_desc_init_by_tag(&bias, 1, bd, dnnl_f32, dnnl_a));
	dnnl_dims_t st = {s->sh, s->sw}, di = {s->dh, s->dw}, pl = {s->ph, s->pw};
	dnnl_dims_t pr;
	for (int i = 0; i < 2; i++) {
		long in = i ? s->iw : s->ih, out = i ? s->ow : s->oh, k = i ? s->kw : s->kh;
		long str = i ? s->sw : s->sh, dil = i ? s->dw : s->dh, p = i ? s->pw : s->ph;
		pr[i] = (out - 1) * str + (k - 1) * (dil + 1) + 1 - in - p;
	}
	dnnl_convolution_desc_t d;
	dnnl_primitive_desc_t fpd, pd;
	const char *impl;
	CK(dnnl_dilated_convolution_forward_desc_init(&d, dnnl_forward_training, dnnl_convolution_direct,
	   &src, &wei, NULL, &dst, st, di, pl, pr));
	CK(dnnl_primitive_desc_create(&fpd, &d, NULL, eng, NULL));
	if (passes & 1) {
		qa a[] = {{DNNL_ARG_SRC, dnnl_query_src_md}, {DNNL_ARG_WEIGHTS, dnnl_query_weights_md}, {DNNL_ARG_DST, dnnl_query_dst_md}};
		double ms = run_pd(fpd, a, 3, &impl);
		printf("%s fwd %s %s %.3f\n", desc, cfg, impl, ms);
	}
	if (passes & 2) {
		CK(dnnl_dilated_convolution_backward_data_desc_init(&d, dnnl_convolution_direct, &src, &wei, &dst, st, di, pl, pr));
		CK(dnnl_primitive_desc_create(&pd, &d, NULL, eng, fpd));
		qa a[] = {{DNNL_ARG_DIFF_SRC, dnnl_query_diff_src_md}, {DNNL_ARG_WEIGHTS, dnnl_query_weights_md}, {DNNL_ARG_DIFF_DST, dnnl_query_diff_dst_md}};
		double ms = run_pd(pd, a, 3, &impl);
		printf("%s bwd_data %s %s %.3f\n", desc, cfg, impl, ms);
		dnnl_primitive_desc_destroy(pd);
	}
	if (passes & 4) {
		dnnl_memory_desc_t dbias = bias;
		CK(dnnl_dilated_convolution_backward_weights_desc_init(&d, dnnl_convolution_direct, &src, &dwei, &dbias, &dst, st, di, pl, pr));
		if (dnnl_primitive_desc_create(&pd, &d, NULL, eng, fpd)) {
			printf("%s bwd_weights %s unsupported -\n", desc, cfg);
		} else {
			qa b[] = {{DNNL_ARG_SRC, dnnl_query_src_md}, {DNNL_ARG_DIFF_WEIGHTS, dnnl_query_diff_weights_md}, {DNNL_ARG_DIFF_DST, dnnl_query_diff_dst_md}};
			/* dB: f32 [oc], bound beside the pd's own tensors */
			double ms;
			{
				dnnl_primitive_t p; dnnl_exec_arg_t args[6]; int n = 0;
				CK(dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl));
				for (int i = 0; i < 3; i++) { args[n].arg = b[i].arg; args[n].memory = mk(dnnl_primitive_desc_query_md(pd, b[i].q, 0)); n++; }
				args[n].arg = DNNL_ARG_DIFF_BIAS; args[n].memory = mk(&bias); n++;
				CK(dnnl_primitive_create(&p, pd));
				double t[64];
				for (int r = -1; r < reps; r++) { double t0 = now(); CK(dnnl_primitive_execute(p, strm, n, args)); CK(dnnl_stream_wait(strm)); if (r >= 0) t[r] = now() - t0; }
				qsort(t, reps, sizeof t[0], cmpd); ms = pick(t);
				dnnl_primitive_destroy(p);
				for (int i = 0; i < n; i++) dnnl_memory_destroy(args[i].memory);
			}
			printf("%s bwd_weights %s %s %.3f\n", desc, cfg, impl, ms);
			dnnl_primitive_desc_destroy(pd);
		}
	}
	dnnl_primitive_desc_destroy(fpd);
}

static void reorder(const char *desc, long n, long c, long h, long w, dnnl_format_tag_t ftag, dnnl_format_tag_t btag, const char *cfg)
{
	dnnl_memory_desc_t a, b; dnnl_primitive_desc_t pd; const char *impl;
	md4(&a, n, c, h, w, dnnl_f32, ftag); md4(&b, n, c, h, w, dnnl_bf16, btag);
	CK(dnnl_reorder_primitive_desc_create(&pd, &a, eng, &b, eng, NULL));
	qa q[] = {{DNNL_ARG_FROM, dnnl_query_src_md}, {DNNL_ARG_TO, dnnl_query_dst_md}};
	double ms = run_pd(pd, q, 2, &impl);
	printf("%s reorder_f32_to_bf16 %s %s %.3f\n", desc, cfg, impl, ms);
	dnnl_primitive_desc_destroy(pd);
	CK(dnnl_reorder_primitive_desc_create(&pd, &b, eng, &a, eng, NULL));
	ms = run_pd(pd, q, 2, &impl);
	printf("%s reorder_bf16_to_f32 %s %s %.3f\n", desc, cfg, impl, ms);
	dnnl_primitive_desc_destroy(pd);
}

static void pointwise(const char *desc, long n, long c, long h, long w, dnnl_data_type_t dt, dnnl_format_tag_t tag, const char *cfg)
{
	dnnl_memory_desc_t md; const char *impl; dnnl_primitive_desc_t fpd, pd;
	md4(&md, n, c, h, w, dt, tag);
	/* BN training fwd + bwd */
	dnnl_batch_normalization_desc_t bd;
	unsigned fl = dnnl_use_scaleshift;
	CK(dnnl_batch_normalization_forward_desc_init(&bd, dnnl_forward_training, &md, 1e-5f, fl));
	if (dnnl_primitive_desc_create(&fpd, &bd, NULL, eng, NULL)) { printf("%s bn %s unsupported -\n", desc, cfg); return; }
	{
		dnnl_memory_desc_t st; dnnl_dims_t cd = {c}, sd = {2, c};
		CK(dnnl_memory_desc_init_by_tag(&st, 1, cd, dnnl_f32, dnnl_a));
		dnnl_memory_desc_t ss; CK(dnnl_memory_desc_init_by_tag(&ss, 2, sd, dnnl_f32, dnnl_ab));
		dnnl_memory_t src = mk(&md), dst = mk(&md), mean = mk(&st), var = mk(&st), sc = mk(&ss), dsc = mk(&ss), dd = mk(&md), ds = mk(&md);
		dnnl_primitive_t p;
		CK(dnnl_primitive_desc_query(fpd, dnnl_query_impl_info_str, 0, &impl));
		dnnl_exec_arg_t args[] = {{DNNL_ARG_SRC, src}, {DNNL_ARG_DST, dst}, {DNNL_ARG_MEAN, mean}, {DNNL_ARG_VARIANCE, var}, {DNNL_ARG_SCALE_SHIFT, sc}};
		CK(dnnl_primitive_create(&p, fpd));
		double t[64];
		for (int r = -1; r < reps; r++) { double t0 = now(); CK(dnnl_primitive_execute(p, strm, 5, args)); CK(dnnl_stream_wait(strm)); if (r >= 0) t[r] = now() - t0; }
		qsort(t, reps, sizeof t[0], cmpd);
		printf("%s bn_fwd %s %s %.3f\n", desc, cfg, impl, pick(t));
		dnnl_primitive_destroy(p);
		CK(dnnl_batch_normalization_backward_desc_init(&bd, dnnl_backward, &md, &md, 1e-5f, fl));
		CK(dnnl_primitive_desc_create(&pd, &bd, NULL, eng, fpd));
		CK(dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl));
		dnnl_exec_arg_t bargs[] = {{DNNL_ARG_SRC, src}, {DNNL_ARG_DIFF_DST, dd}, {DNNL_ARG_MEAN, mean}, {DNNL_ARG_VARIANCE, var}, {DNNL_ARG_SCALE_SHIFT, sc}, {DNNL_ARG_DIFF_SRC, ds}, {DNNL_ARG_DIFF_SCALE_SHIFT, dsc}};
		CK(dnnl_primitive_create(&p, pd));
		for (int r = -1; r < reps; r++) { double t0 = now(); CK(dnnl_primitive_execute(p, strm, 7, bargs)); CK(dnnl_stream_wait(strm)); if (r >= 0) t[r] = now() - t0; }
		qsort(t, reps, sizeof t[0], cmpd);
		printf("%s bn_bwd %s %s %.3f\n", desc, cfg, impl, pick(t));
		dnnl_primitive_destroy(p); dnnl_primitive_desc_destroy(pd); dnnl_primitive_desc_destroy(fpd);
		dnnl_memory_t all[] = {src, dst, mean, var, sc, dsc, dd, ds};
		for (int i = 0; i < 8; i++) dnnl_memory_destroy(all[i]);
	}
	/* ReLU fwd, bwd */
	dnnl_eltwise_desc_t ed;
	CK(dnnl_eltwise_forward_desc_init(&ed, dnnl_forward_training, dnnl_eltwise_relu, &md, 0, 0));
	CK(dnnl_primitive_desc_create(&fpd, &ed, NULL, eng, NULL));
	qa e1[] = {{DNNL_ARG_SRC, dnnl_query_src_md}, {DNNL_ARG_DST, dnnl_query_dst_md}};
	double ms = run_pd(fpd, e1, 2, &impl);
	printf("%s relu_fwd %s %s %.3f\n", desc, cfg, impl, ms);
	CK(dnnl_eltwise_backward_desc_init(&ed, dnnl_eltwise_relu, &md, &md, 0, 0));
	CK(dnnl_primitive_desc_create(&pd, &ed, NULL, eng, fpd));
	qa e2[] = {{DNNL_ARG_SRC, dnnl_query_src_md}, {DNNL_ARG_DIFF_DST, dnnl_query_diff_dst_md}, {DNNL_ARG_DIFF_SRC, dnnl_query_diff_src_md}};
	ms = run_pd(pd, e2, 3, &impl);
	printf("%s relu_bwd %s %s %.3f\n", desc, cfg, impl, ms);
	dnnl_primitive_desc_destroy(pd); dnnl_primitive_desc_destroy(fpd);
	dnnl_binary_desc_t bnd;
	CK(dnnl_binary_desc_init(&bnd, dnnl_binary_add, &md, &md, &md));
	CK(dnnl_primitive_desc_create(&pd, &bnd, NULL, eng, NULL));
	qa b1[] = {{DNNL_ARG_SRC_0, dnnl_query_src_md}, {DNNL_ARG_SRC_1, dnnl_query_src_md}, {DNNL_ARG_DST, dnnl_query_dst_md}};
	ms = run_pd(pd, b1, 3, &impl);
	printf("%s add %s %s %.3f\n", desc, cfg, impl, ms);
	dnnl_primitive_desc_destroy(pd);
}

int main(int argc, char **argv)
{
	const char *what = argc > 1 ? argv[1] : "conv";   /* conv | bw | pw */
	if (getenv("REPS")) reps = atoi(getenv("REPS"));
	if (reps < 1 || reps > 64) reps = 5;
	use_min = getenv("MIN") != NULL;
	CK(dnnl_engine_create(&eng, dnnl_cpu, 0));
	CK(dnnl_stream_create(&strm, eng, dnnl_stream_default_flags));
	char line[512];
	while (fgets(line, sizeof line, stdin)) {
		shp s = {0}; s.g = 1;
		char *p = strchr(line, '\n'); if (p) *p = 0;
		if (!line[0]) continue;
		int ok = sscanf(line, "mb%ld_g%ldic%ldoc%ld_ih%ldoh%ldkh%ldsh%lddh%ldph%ld_iw%ldow%ldkw%ldsw%lddw%ldpw%ld",
		                &s.mb, &s.g, &s.ic, &s.oc, &s.ih, &s.oh, &s.kh, &s.sh, &s.dh, &s.ph, &s.iw, &s.ow, &s.kw, &s.sw, &s.dw, &s.pw) == 16;
		if (!ok) { s.g = 1; ok = sscanf(line, "mb%ld_ic%ldoc%ld_ih%ldoh%ldkh%ldsh%lddh%ldph%ld_iw%ldow%ldkw%ldsw%lddw%ldpw%ld",
		                &s.mb, &s.ic, &s.oc, &s.ih, &s.oh, &s.kh, &s.sh, &s.dh, &s.ph, &s.iw, &s.ow, &s.kw, &s.sw, &s.dw, &s.pw) == 15; }
		if (!ok) { fprintf(stderr, "bad desc %s\n", line); continue; }
		dnnl_format_tag_t fs = s.ic % 16 ? dnnl_abcd : dnnl_aBcd16b, fd = s.oc % 16 ? dnnl_abcd : dnnl_aBcd16b;
		if (!strcmp(what, "conv")) {
			conv(line, &s, "f32_runtime", dnnl_f32, fs, fd, dnnl_f32, 7);
			conv(line, &s, "bf16_any", dnnl_bf16, dnnl_format_tag_any, dnnl_format_tag_any, dnnl_bf16, 7);
			conv(line, &s, "bf16_nhwc", dnnl_bf16, dnnl_acdb, dnnl_acdb, dnnl_bf16, 7);
			conv(line, &s, "mixed_any", dnnl_bf16, dnnl_format_tag_any, dnnl_format_tag_any, dnnl_f32, 4);
			conv(line, &s, "mixed_nhwc", dnnl_bf16, dnnl_acdb, dnnl_acdb, dnnl_f32, 4);
			conv(line, &s, "mixed_blk", dnnl_bf16, fs, fd, dnnl_f32, 4);
			reorder(line, s.mb, s.ic, s.ih, s.iw, fs, dnnl_acdb, "src_nhwc");
			reorder(line, s.mb, s.oc, s.oh, s.ow, fd, dnnl_acdb, "dst_nhwc");
		} else if (!strcmp(what, "bw")) {
			conv(line, &s, "f32_runtime", dnnl_f32, fs, fd, dnnl_f32, 4);
			conv(line, &s, "mixed_any", dnnl_bf16, dnnl_format_tag_any, dnnl_format_tag_any, dnnl_f32, 4);
			conv(line, &s, "mixed_nhwc", dnnl_bf16, dnnl_acdb, dnnl_acdb, dnnl_f32, 4);
			conv(line, &s, "mixed_blk", dnnl_bf16, fs, fd, dnnl_f32, 4);
			conv(line, &s, "bf16_any", dnnl_bf16, dnnl_format_tag_any, dnnl_format_tag_any, dnnl_bf16, 4);
		} else {
			pointwise(line, s.mb, s.oc, s.oh, s.ow, dnnl_f32, fd, "f32_blk");
			pointwise(line, s.mb, s.oc, s.oh, s.ow, dnnl_bf16, fd, "bf16_blk");
			pointwise(line, s.mb, s.oc, s.oh, s.ow, dnnl_bf16, dnnl_acdb, "bf16_nhwc");
		}
		fflush(stdout);
	}
	dnnl_stream_destroy(strm);
	dnnl_engine_destroy(eng);
	return 0;
}
static double pick(double *t) { return use_min ? t[0] : t[reps / 2]; }
