/* test_ir.c - the IR's mutation API on tiny hand-built graphs: use-def
 * links stay consistent, ordering, dead code, depth, names. */
#include <string.h>

#include "ir.h"
#include "tap.h"

/* x -> Relu(a) -> Relu(b) -> y, plus W initializer feeding MatMul(c). */
typedef struct chain {
	np_model *m;
	np_value *x, *a, *b, *w, *y;
	np_node *n1, *n2, *n3;
} chain;

static void build_chain(chain *c)
{
	c->m = np_model_new();
	np_graph *g = c->m->graph;
	np_error err = {0};
	c->x = np_graph_new_value(g, "x", &err);
	c->x->is_input = true;
	g->inputs = &c->x;
	g->n_inputs = 1;
	int64_t dims[2] = {4, 4};
	np_tensor *t = np_model_new_tensor(c->m, NP_FLOAT, 2, dims, &err);
	c->w = np_graph_add_initializer(g, "W", t, &err);
	c->a = np_graph_new_value(g, "a", &err);
	c->b = np_graph_new_value(g, "b", &err);
	c->y = np_graph_new_value(g, "y", &err);
	c->y->is_output = true;
	g->outputs = &c->y;
	g->n_outputs = 1;
	np_value *in3[2] = {c->b, c->w};
	/* Insert out of order: consumers first. */
	c->n3 = np_graph_new_node(g, "MatMul", "", "mm", in3, 2, &c->y, 1);
	np_graph_insert_node(g, c->n3);
	c->n2 = np_graph_new_node(g, "Relu", "", "r2", &c->a, 1, &c->b, 1);
	np_graph_insert_node(g, c->n2);
	c->n1 = np_graph_new_node(g, "Relu", "", "r1", &c->x, 1, &c->a, 1);
	np_graph_insert_node(g, c->n1);
}

static void test_build_and_order(void)
{
	chain c;
	build_chain(&c);
	np_graph *g = c.m->graph;
	np_error err = {0};
	ok(g->n_nodes == 3, "three nodes");
	ok(g->nodes[0] == c.n1 && g->nodes[1] == c.n2 && g->nodes[2] == c.n3,
	   "insert places producers before consumers");
	ok(np_graph_verify(g, &err) == NP_OK, "verify: %s", err.msg);
	ok(c.a->producer == c.n1 && c.a->n_uses == 1 && c.a->uses[0].node == c.n2,
	   "use-def of a");
	ok(c.w->n_uses == 1 && c.w->uses[0].index == 1, "initializer use index");
	ok(np_graph_depth(g) == 3, "depth 3");
	ok(np_graph_find(g, "b") == c.b && !np_graph_find(g, "nope"), "find by name");
	ok(!np_graph_new_value(g, "b", &err) && strstr(err.msg, "defined twice"),
	   "duplicate name refused: %s", err.msg);
	np_value *u = np_graph_new_unique_value(g, "b");
	ok(u && strcmp(u->name, "b_1") == 0, "unique value name b_1");
	ok(strcmp(np_graph_unique_node_name(g, "r1"), "r1_1") == 0 &&
	   strcmp(np_graph_unique_node_name(g, "fresh"), "fresh") == 0,
	   "unique node names");
	np_model_free(c.m);
}

static void test_bypass_and_dce(void)
{
	chain c;
	build_chain(&c);
	np_graph *g = c.m->graph;
	np_error err = {0};
	/* Bypass r2: its consumers read a instead of b. */
	np_value_replace_uses(c.b, c.a);
	ok(c.b->n_uses == 0 && c.a->n_uses == 2, "replace_uses moved the use");
	ok(c.n3->inputs[0] == c.a, "consumer rewired");
	ok(np_graph_verify(g, &err) == NP_OK, "verify after rewiring: %s", err.msg);
	int removed = np_graph_dead_code(g);
	ok(removed == 1 && g->n_nodes == 2 && c.n2->removed, "dead code removed r2");
	ok(c.a->n_uses == 1, "r2's use of a dropped");
	ok(np_graph_verify(g, &err) == NP_OK, "verify after DCE: %s", err.msg);
	ok(np_graph_depth(g) == 2, "depth 2 after removal");
	/* Removing the MatMul leaves W unused: DCE drops the initializer. */
	np_graph_remove_node(g, c.n3);
	c.y->is_output = false;
	g->n_outputs = 0;
	np_graph_dead_code(g);
	ok(g->n_initializers == 0, "unused initializer dropped");
	ok(g->n_nodes == 0, "everything dead without outputs");
	np_model_free(c.m);
}

static void test_cycle(void)
{
	np_model *m = np_model_new();
	np_graph *g = m->graph;
	np_error err = {0};
	np_value *p = np_graph_new_value(g, "p", &err);
	np_value *q = np_graph_new_value(g, "q", &err);
	np_node *a = np_graph_new_node(g, "Neg", "", "A", &q, 1, &p, 1);
	np_graph_insert_node(g, a);
	np_node *b = np_graph_new_node(g, "Neg", "", "B", &p, 1, &q, 1);
	np_graph_insert_node(g, b);
	np_status st = np_graph_toposort(g, &err);
	ok(st == NP_ERR_INVALID && strstr(err.msg, "cycle"), "cycle found: %s", err.msg);
	np_model_free(m);
}

static void test_toposort_stable(void)
{
	chain c;
	build_chain(&c);
	np_graph *g = c.m->graph;
	np_error err = {0};
	/* Scramble the order by hand, then sort. */
	g->nodes[0] = c.n3;
	g->nodes[2] = c.n1;
	ok(np_graph_toposort(g, &err) == NP_OK, "toposort ok");
	ok(g->nodes[0] == c.n1 && g->nodes[1] == c.n2 && g->nodes[2] == c.n3,
	   "toposort restores dependency order");
	ok(np_graph_verify(g, &err) == NP_OK, "verify after sort: %s", err.msg);
	np_model_free(c.m);
}

static void test_attrs_and_metadata(void)
{
	chain c;
	build_chain(&c);
	np_node_set_attr_int(c.n3, "axis", 3);
	np_node_set_attr_float(c.n3, "alpha", 0.5f);
	int64_t pads[4] = {1, 1, 1, 1};
	np_node_set_attr_ints(c.n3, "pads", pads, 4);
	np_node_set_attr_string(c.n3, "mode", "constant");
	np_node_set_attr_int(c.n3, "axis", 7);
	int n = 0;
	const int64_t *got = np_node_attr_ints(c.n3, "pads", &n);
	ok(np_node_attr_int(c.n3, "axis", 0) == 7 && c.n3->n_attrs == 4,
	   "attribute replaced in place");
	ok(np_node_attr_float(c.n3, "alpha", 0) == 0.5f, "float attribute");
	ok(n == 4 && got[3] == 1, "ints attribute");
	ok(strcmp(np_node_attr_string(c.n3, "mode", ""), "constant") == 0, "string attr");
	np_node_remove_attr(c.n3, "alpha");
	ok(!np_node_attr(c.n3, "alpha") && c.n3->n_attrs == 3, "attribute removed");
	np_model_set_metadata(c.m, "k", "v1");
	np_model_set_metadata(c.m, "k", "v2");
	ok(c.m->n_metadata == 1 && strcmp(np_model_get_metadata(c.m, "k"), "v2") == 0,
	   "metadata set replaces");
	np_model_free(c.m);
}

static void test_dims(void)
{
	int64_t ok_dims[3] = {2, 3, 4}, neg[2] = {2, -1}, big[2] = {(int64_t)1 << 62, 8};
	ok(np_dims_product(ok_dims, 3) == 24, "dims product");
	ok(np_dims_product(neg, 2) == -1, "negative dim refused");
	ok(np_dims_product(big, 2) == -1, "2^62 * 8 overflows");
	ok(np_dims_product(NULL, 0) == 1, "scalar has one element");
	ok(np_dtype_size(NP_FLOAT) == 4 && np_dtype_size(NP_COMPLEX128) == 16 &&
	   np_dtype_size(NP_STRING) == 0 && np_dtype_size(99) == 0, "dtype sizes");
}

int main(void)
{
	test_build_and_order();
	test_bypass_and_dce();
	test_cycle();
	test_toposort_stable();
	test_attrs_and_metadata();
	test_dims();
	return done_testing();
}
