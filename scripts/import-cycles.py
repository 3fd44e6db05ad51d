#!/usr/bin/env python3
"""Fails when src/ has an import cycle between top-level modules, or between the children of
one module (ARCHITECTURE.md: zero import cycles). A parent declaring its children is not an
import; a child using its parent's re-exports is, so shared types live in leaf files."""
import re, os, sys
root = os.path.join(os.path.dirname(__file__), '..', 'src')
root = os.path.normpath(root)
edges={}
def modname(path):
    p=os.path.relpath(path, root)[:-3]
    if p.endswith('/mod'): p=p[:-4]
    return p.replace('/','::')
for d,_,fs in os.walk(root):
    for f in fs:
        if not f.endswith('.rs') or f=='main.rs': continue
        path=os.path.join(d,f); m=modname(path)
        text=open(path).read()
        text=text.split('#[cfg(test)]')[0]
        for u in re.findall(r'crate::([a-z_]+(?:::[a-z_]+)*)',text):
            edges.setdefault(m,set()).add(u)
        for group in re.findall(r'crate::\{([^}]*)\}',text):
            for u in re.findall(r'([a-z_]+(?:::[a-z_]+)*)',group):
                edges.setdefault(m,set()).add(u)
        for u in re.findall(r'super::([a-z_]+)',text):
            parent='::'.join(m.split('::')[:-1])
            if parent: edges.setdefault(m,set()).add(parent+'::'+u)
mods=set(edges)|{t for v in edges.values() for t in v}
def level(m,depth):
    parts=m.split('::'); return '::'.join(parts[:depth])
# check cycles at depth 1 (top-level) and depth 2 within same top
def cycles(depth):
    g={}
    for a,bs in edges.items():
        for b in bs:
            A=level(a,depth); B=level(b,depth)
            if depth==2 and A.split('::')[0]!=B.split('::')[0]: continue
            if A!=B: g.setdefault(A,set()).add(B)
    found=set()
    def dfs(n,stack,seen):
        for x in g.get(n,()):
            if x in stack:
                cyc=stack[stack.index(x):]
                found.add(tuple(sorted(cyc)))
            elif x not in seen:
                seen.add(x); dfs(x,stack+[x],seen)
    for n in g: dfs(n,[n],{n})
    return found,g
failed = False
for depth in (1, 2):
    found, _ = cycles(depth)
    for cycle in sorted(found):
        failed = True
        print('import cycle:', ' -> '.join(cycle))
if failed:
    sys.exit(1)
print('no import cycles')
