"""joint design across domains: several problems, one spec, one fit"""
