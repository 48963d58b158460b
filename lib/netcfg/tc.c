/*
 * tc.c - a slice's rate cap, both directions, on the host's side of its veth
 * (the slice has no CAP_NET_ADMIN there, so it cannot lift its own cap),
 * through libnl-route.
 *
 *   into the slice:   TBF as the root qdisc of the host end (vsh*): what the
 *                     host sends into the veth is what the slice receives.
 *   out of the slice: what the slice sends arrives on the host end's ingress;
 *                     a match-all u32 filter there redirects it (mirred) to the
 *                     slice's ifb device (vsi*), whose root qdisc is a TBF.
 *                     Shaping (a queue) rather than policing (drops) keeps a
 *                     TCP flow near the cap instead of well under it.
 *
 * The veth's qdiscs go with the veth (the slice's namespace ends, the pair
 * goes); the ifb stays until the next start, destroy or stale cleanup.
 */
#include <linux/if_ether.h>
#include <linux/pkt_cls.h>
#include <linux/pkt_sched.h>
#include <linux/tc_act/tc_mirred.h>

#include <netlink/route/act/mirred.h>
#include <netlink/route/classifier.h>
#include <netlink/route/cls/u32.h>
#include <netlink/route/link.h>
#include <netlink/route/qdisc.h>
#include <netlink/route/qdisc/tbf.h>

#include "netcfg_int.h"
#include "vslice/util.h"

/* ffff:0, the ingress qdisc (TC_HANDLE(0xffff, 0) shifts an int into its sign bit). */
#define INGRESS_HANDLE 0xffff0000U

static int tbf_add(struct nl_sock *sk, const char *dev, uint64_t bps, struct vs_error *err)
{
	int idx = link_index(sk, dev);
	if (!idx)
		return vs_error_set(err, ENODEV, "%s: no such device", dev);
	/* Bytes/s; bucket 20 ms of traffic (at least a few full frames), queue
	 * 200 ms: enough for one TCP flow to keep the link busy at the cap (a
	 * shorter queue loses packets, and a flow's average, under load). */
	uint64_t rate = bps / 8, bucket = rate / 50, limit = rate / 5;
	if (bucket < 3200)
		bucket = 3200;
	if (limit < 2 * bucket)
		limit = 2 * bucket;
	struct rtnl_qdisc *q = rtnl_qdisc_alloc();
	if (!q)
		return vs_error_set(err, ENOMEM, "qdisc");
	rtnl_tc_set_ifindex(TC_CAST(q), idx);
	rtnl_tc_set_parent(TC_CAST(q), TC_H_ROOT);
	rtnl_tc_set_handle(TC_CAST(q), TC_HANDLE(1, 0));
	int r = rtnl_tc_set_kind(TC_CAST(q), "tbf");
	if (r >= 0) {
		rtnl_qdisc_tbf_set_rate(q, (int)rate, (int)bucket, 0);
		rtnl_qdisc_tbf_set_limit(q, (int)limit);
		r = rtnl_qdisc_add(sk, q, NLM_F_CREATE | NLM_F_REPLACE);
	}
	rtnl_qdisc_put(q);
	return r < 0 ? nl_fail(err, r, "%s: tbf qdisc", dev) : 0;
}

static int redirect_ingress(struct nl_sock *sk, const char *from, const char *to,
			    struct vs_error *err)
{
	int idx = link_index(sk, from), to_idx = link_index(sk, to);
	if (!idx || !to_idx)
		return vs_error_set(err, ENODEV, "%s -> %s: no such device", from, to);
	struct rtnl_qdisc *q = rtnl_qdisc_alloc();
	rtnl_tc_set_ifindex(TC_CAST(q), idx);
	rtnl_tc_set_parent(TC_CAST(q), TC_H_INGRESS);
	rtnl_tc_set_handle(TC_CAST(q), INGRESS_HANDLE);
	int r = rtnl_tc_set_kind(TC_CAST(q), "ingress");
	if (r >= 0)
		r = rtnl_qdisc_add(sk, q, NLM_F_CREATE | NLM_F_EXCL);
	rtnl_qdisc_put(q);
	if (r < 0)
		return nl_fail(err, r, "%s: ingress qdisc", from);

	struct rtnl_cls *cls = rtnl_cls_alloc();
	struct rtnl_act *act = rtnl_act_alloc();
	if (!cls || !act)
		return vs_error_set(err, ENOMEM, "filter");
	rtnl_tc_set_ifindex(TC_CAST(cls), idx);
	rtnl_tc_set_parent(TC_CAST(cls), INGRESS_HANDLE);
	rtnl_cls_set_prio(cls, 1);
	rtnl_cls_set_protocol(cls, ETH_P_ALL);
	/* u32 matching every packet: cls_matchall is not in every kernel. */
	if ((r = rtnl_tc_set_kind(TC_CAST(cls), "u32")) >= 0 &&
	    (r = rtnl_tc_set_kind(TC_CAST(act), "mirred")) >= 0 &&
	    (r = rtnl_u32_add_key_uint32(cls, 0, 0, 0, 0)) >= 0 &&
	    (r = rtnl_u32_set_cls_terminal(cls)) >= 0) {
		rtnl_mirred_set_action(act, TCA_EGRESS_REDIR);
		rtnl_mirred_set_policy(act, TC_ACT_STOLEN);
		rtnl_mirred_set_ifindex(act, (uint32_t)to_idx);
		if ((r = rtnl_u32_add_action(cls, act)) >= 0)
			r = rtnl_cls_add(sk, cls, NLM_F_CREATE | NLM_F_EXCL);
	}
	rtnl_act_put(act);
	rtnl_cls_put(cls);
	return r < 0 ? nl_fail(err, r, "%s: redirect to %s", from, to) : 0;
}

static int ifb_create(struct nl_sock *sk, const char *name, struct vs_error *err)
{
	struct rtnl_link *l = rtnl_link_alloc();
	if (!l)
		return vs_error_set(err, ENOMEM, "ifb");
	rtnl_link_set_name(l, name);
	int r = rtnl_link_set_type(l, "ifb");
	if (r >= 0)
		r = rtnl_link_add(sk, l, NLM_F_CREATE | NLM_F_EXCL);
	rtnl_link_put(l);
	if (r < 0)
		return nl_fail(err, r, "create ifb %s", name);
	return link_up(sk, name, 0, err);
}

int tc_cap(struct nl_sock *sk, const struct ipam_lease *l, struct vs_error *err)
{
	int r;
	if (!l->want.rate_bps)
		return 0;
	if ((r = tbf_add(sk, l->veth, l->want.rate_bps, err)) < 0 ||
	    (r = ifb_create(sk, l->ifb, err)) < 0 ||
	    (r = tbf_add(sk, l->ifb, l->want.rate_bps, err)) < 0 ||
	    (r = redirect_ingress(sk, l->veth, l->ifb, err)) < 0)
		return vs_error_wrap(err, "slice %s: rate cap", l->name);
	return 0;
}
